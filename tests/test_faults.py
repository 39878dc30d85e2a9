"""Faults: kill -9 of a real `scenematch serve` mid-work, PostgreSQL going away, a full disk.

After each fault the service must come back on its own: the previous index serves, nothing
half-written is served or kept, an interrupted job shows failed, and running it again works.
"""
from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from indexer.retrieval import segment, versions
from service.app import create_app
from service.demo import DEMO_DIR, read_jsonl
from tests.conftest import ADMIN, ADMIN_H, CLIENT, CLIENT_H, make_settings
from tests.test_hostile_input import INTERNALS

ROOT = Path(__file__).resolve().parents[1]
NEEDS = list(read_jsonl(DEMO_DIR / "needs"))
CAPS = list(read_jsonl(DEMO_DIR / "capabilities"))


def poll(fetch: Any, done: Any, timeout: float = 600, every: float = 0.2) -> Any:
    """fetch() until done(value); the last value. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not done(value := fetch()):
        assert time.monotonic() < deadline, value
        time.sleep(every)
    return value


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scenematch_command() -> list[str]:
    script = Path(sys.executable).with_name("scenematch")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from service.cli import app; app()"]


class Service:
    """`scenematch serve` as a child process on a free loopback port."""

    def __init__(self, data_dir: Path, **env: str):
        self.data_dir, self.port = data_dir, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SCENEMATCH_DATA_DIR": str(data_dir), "SCENEMATCH_ADMIN_TOKEN": ADMIN,
                    "SCENEMATCH_CLIENT_TOKENS": CLIENT, "SCENEMATCH_LOAD_DEMO": "false",
                    "SCENEMATCH_REFRESH_INTERVAL_S": "0.5", "SCENEMATCH_LOG_LEVEL": "WARNING",
                    "SCENEMATCH_AUTO_ADAPT": "false", **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base, timeout=120)

    def start(self, timeout: float = 600) -> "Service":
        self.log = (self.data_dir.parent / f"serve-{uuid.uuid4().hex[:6]}.log").open("wb")
        self.proc = subprocess.Popen([*scenematch_command(), "serve", "--host", "127.0.0.1", "--port",
                                      str(self.port)], cwd=ROOT, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"scenematch serve exited: {self.proc.returncode}"
            try:
                if self.client.get("/readyz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service never became ready"
            time.sleep(0.2)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self.log.close()

    def bulk(self, plural: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        r = self.client.post(f"/v1/{plural}/bulk", json={"items": items}, headers=CLIENT_H)
        assert r.status_code == 200, r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN_H).json()

    def wait_job(self, job_id: str) -> dict[str, Any]:
        return poll(lambda: self.job(job_id), lambda job: job["status"] in ("succeeded", "failed"))

    def reindex(self) -> str:
        r = self.client.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H)
        assert r.status_code == 202, r.text
        return r.json()["job_id"]

    def wait_indexed(self, counts: dict[str, int]) -> None:
        poll(lambda: self.client.get("/v1/admin/index", headers=ADMIN_H).json(),
             lambda index: index["counts"] == {"scenarios": 0, **counts} and not index["pending_changes"])

    def wait_running(self, job_id: str) -> dict[str, Any]:
        job = poll(lambda: self.job(job_id), lambda job: job["status"] != "queued", timeout=120, every=0.02)
        assert job["status"] == "running", job
        return job


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path / "data")
    yield svc
    svc.stop()
    svc.client.close()


def salted(records: list[dict[str, Any]], salt: str, prefix: str) -> list[dict[str, Any]]:
    """Copies under new ids whose text no cache has seen, so indexing them does real model work
    (one short passage each: enough to keep a rebuild busy, cheap enough for the normal suite)."""
    return [{**r, "id": f"{prefix}-{i}", "title": f"{r['title']}（{salt}）"[:200], "cases": None, "tags": [],
             "description": f"{r.get('description', '')[:100]} 批次{salt}"} for i, r in enumerate(records)]


def leftovers(data_dir: Path) -> list[str]:
    root = versions.index_root(data_dir)
    return [p.name for p in root.iterdir() if p.name.startswith(versions.TMP_PREFIX)] if root.exists() else []


# ---- kill -9 ----------------------------------------------------------------------------------
def test_kill_9_during_full_rebuild(service: Service) -> None:
    service.start()
    service.bulk("needs", NEEDS[::20])
    service.bulk("capabilities", CAPS[::20])
    first = service.wait_job(service.reindex())
    assert first["status"] == "succeeded", first
    previous = first["result"]["version"]
    extra = salted(CAPS[::12], uuid.uuid4().hex[:8], "C-kill")
    service.bulk("capabilities", extra)
    job_id = service.reindex()
    service.wait_running(job_id)
    service.kill9()
    root = versions.index_root(service.data_dir)
    assert versions.active_version(root) == previous  # the pointer never moved

    service.start()
    status = service.client.get("/v1/admin/index", headers=ADMIN_H).json()
    assert status["version"] == previous and not leftovers(service.data_dir)
    assert versions.complete_versions(root)[-1] == previous  # nothing half-built kept as a version
    job = service.job(job_id)
    assert job["status"] == "failed" and "interrupted" in job["error"], job
    # Nothing stored was lost: the records written before the kill are served from the live delta.
    total = {"needs": len(NEEDS[::20]), "capabilities": len(CAPS[::20]) + len(extra), "scenarios": 0}
    service.wait_indexed(total)
    found = service.client.post("/v1/search", json={"query": extra[0]["title"], "limit": 3}).json()["items"]
    assert extra[0]["id"] in [m["id"] for m in found]
    rerun = service.wait_job(service.reindex())
    assert rerun["status"] == "succeeded" and rerun["result"]["counts"] == total, rerun
    assert not leftovers(service.data_dir)


def stored_needs(data_dir: Path) -> dict[str, tuple[str, str, str]]:
    """The needs table as SQLite has it (read beside the server, or after it died)."""
    db = sqlite3.connect(data_dir / "scenematch.db", timeout=30)
    try:
        return {r[0]: (r[1], r[2], r[3]) for r in db.execute("SELECT id, title, description, tags FROM needs")}
    finally:
        db.close()


def test_kill_9_during_bulk_upsert_keeps_every_record_whole(service: Service) -> None:
    service.start()
    # Demo texts under new ids: indexing them is served by the embedding cache, the test is the database.
    items = [{**NEEDS[i % len(NEEDS)], "id": f"N-bulk-{i:05d}"} for i in range(3000)]
    sent = {it["id"]: it for it in items}
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = service.client.post("/v1/needs/bulk", json={"items": items}, headers=CLIENT_H)
        except httpx.TransportError as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 300
    while not (service.data_dir / "scenematch.db").exists() or not stored_needs(service.data_dir):
        assert time.monotonic() < deadline and sender.is_alive(), outcome
        time.sleep(0.01)
    service.kill9()
    sender.join(timeout=60)
    assert "error" in outcome, "the bulk call finished before the kill; make it bigger"

    stored = stored_needs(service.data_dir)
    assert 0 < len(stored) < len(items) and len(stored) % 500 == 0, len(stored)  # whole chunks only
    for rid, (title, description, tags) in stored.items():  # every stored record is whole
        expected = sent[rid]
        assert (title, description, json.loads(tags)) == (
            expected["title"].strip(), expected["description"], expected.get("tags", [])), rid

    service.start()
    page = service.client.get("/v1/needs", params={"limit": 1}, headers=ADMIN_H).json()  # restricted too
    assert page["total"] == len(stored)
    service.wait_indexed({"needs": len(stored), "capabilities": 0})  # the change log knew every one
    again = service.client.post("/v1/needs/bulk", json={"items": items}, headers=CLIENT_H, timeout=600)
    assert again.status_code == 200, again.text
    assert again.json() | {"errors": []} == {"stored": len(items) - len(stored), "unchanged": len(stored),
                                             "failed": 0, "errors": []}
    assert service.client.get("/v1/needs", params={"limit": 1}, headers=ADMIN_H).json()["total"] == len(items)


def test_kill_9_during_report_job(service: Service) -> None:
    service.start()
    service.bulk("needs", [n for n in NEEDS if n.get("visibility") != "restricted"][::2])
    service.bulk("capabilities", CAPS[::3])
    service.wait_indexed({"needs": len([n for n in NEEDS if n.get("visibility") != "restricted"][::2]),
                          "capabilities": len(CAPS[::3])})
    request = {"filters": {"status": ["open", "matching", "closed", "withdrawn"]}, "per_need": 50, "format": "xlsx"}
    accepted = service.client.post("/v1/reports", json=request, headers=CLIENT_H)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    service.wait_running(job_id)
    service.kill9()
    reports = service.data_dir / "reports"
    assert not (reports / f"{job_id}.xlsx").exists()  # only ever renamed into place when complete

    service.start()
    status = service.client.get(f"/v1/reports/{job_id}", headers=CLIENT_H).json()
    assert status["status"] == "failed" and "interrupted" in status["error"] and status["file_url"] is None
    download = service.client.get(f"/v1/reports/{job_id}/file", headers=CLIENT_H)
    assert download.status_code == 409 and download.json()["error"]["code"] == "report_failed"
    rerun = service.client.post("/v1/reports", json={**request, "per_need": 3}, headers=CLIENT_H).json()
    done = service.wait_job(rerun["job_id"])
    assert done["status"] == "succeeded", done
    assert service.client.get(rerun["file_url"], headers=CLIENT_H).status_code == 200


# ---- PostgreSQL going away ---------------------------------------------------------------------
def pg_ctl(pgdir: Path, *args: str) -> None:
    """pg_ctl on our own throw-away cluster, as scripts/postgres.sh runs it."""
    found = shutil.which("pg_config")
    bindir = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip() if found else ""
    if not bindir or not Path(bindir, "pg_ctl").exists():
        bindir = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*run_as, f"{bindir}/pg_ctl", "-D", str(pgdir / "data"), "-l", str(pgdir / "log"), "-w",
                    *args], check=True, capture_output=True)


@pytest.fixture
def postgres() -> Iterator[tuple[Path, str]]:
    if not shutil.which("initdb") and not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        pytest.skip("PostgreSQL is not installed (scripts/test.sh installs it)")
    # Not under tmp_path: the server runs as the postgres user, who cannot enter pytest's folders.
    pgdir = Path(tempfile.mkdtemp(prefix="scenematch-pg-"))
    pgdir.chmod(0o755)
    try:
        out = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start", str(pgdir)], capture_output=True,
                             text=True, check=True)
        yield pgdir, out.stdout.strip()
    finally:
        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", str(pgdir)], capture_output=True)
        shutil.rmtree(pgdir, ignore_errors=True)


DOWN_CALLS = [
    ("GET", "/v1/needs", None, {}), ("GET", "/v1/capabilities/<cap>", None, {}),
    ("GET", "/v1/needs/<need>/matches", None, {}), ("POST", "/v1/search", {"query": "山洪预警"}, {}),
    ("PUT", "/v1/needs/N-while-down", {"title": "断库期间写入"}, CLIENT_H),
    ("POST", "/v1/feedback", {"need_id": "<need>", "capability_id": "<cap>", "label": "relevant"}, CLIENT_H),
    ("GET", "/v1/reports", None, CLIENT_H), ("GET", "/v1/admin/index", None, ADMIN_H),
    ("GET", "/v1/admin/jobs", None, ADMIN_H),
]


def call(service: Service, method: str, path: str, body: Any, headers: dict[str, str],
         ids: dict[str, str]) -> httpx.Response:
    for key, value in ids.items():
        path = path.replace(f"<{key}>", value)
        if body:
            body = {k: (value if v == f"<{key}>" else v) for k, v in body.items()}
    return service.client.request(method, path, json=body, headers=headers)


def test_postgres_stop_and_start_under_a_running_service(tmp_path: Path, postgres: tuple[Path, str]) -> None:
    pgdir, url = postgres
    service = Service(tmp_path / "data", SCENEMATCH_DATABASE_URL=url)
    try:
        service.start()
        service.bulk("needs", NEEDS[::25])
        service.bulk("capabilities", CAPS[::25])
        service.wait_indexed({"needs": len(NEEDS[::25]), "capabilities": len(CAPS[::25])})
        ids = {"need": NEEDS[0]["id"], "cap": CAPS[0]["id"]}
        for method, path, body, headers in DOWN_CALLS:
            assert call(service, method, path, body, headers, ids).status_code < 400, path

        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", str(pgdir)], capture_output=True, check=True)
        for _ in range(2):
            for method, path, body, headers in DOWN_CALLS:
                r = call(service, method, path, body, headers, ids)
                assert r.status_code == 503, (path, r.status_code, r.text[:300])
                assert r.json()["error"]["code"] in ("database_unavailable", "not_ready"), r.text
                assert r.headers.get("retry-after") and not INTERNALS.search(r.text), r.text
        assert service.client.get("/healthz").status_code == 200
        # Readiness follows the database (its probe is cached ~1.5 s: poll, don't sleep).
        ready = poll(lambda: service.client.get("/readyz"), lambda r: r.status_code == 503, timeout=30)
        error = ready.json()["error"]
        assert error["code"] == "not_ready" and error["details"] == {"reason": "database_unreachable"}, error
        assert "database" in error["message"] and ready.headers.get("retry-after"), ready.text
        assert not INTERNALS.search(ready.text), ready.text

        pg_ctl(pgdir, "restart")  # same cluster, same port (pg_ctl reuses postmaster.opts)
        restarted = time.monotonic()
        poll(lambda: service.client.get("/v1/needs").status_code, lambda status: status == 200, timeout=60)
        print(f"reconnected {time.monotonic() - restarted:.1f} s after PostgreSQL was back")
        poll(lambda: service.client.get("/readyz").status_code, lambda status: status == 200, timeout=30)
        print(f"ready again {time.monotonic() - restarted:.1f} s after PostgreSQL was back")
        for _ in range(3):  # recovered for good, not once by chance
            for method, path, body, headers in DOWN_CALLS:
                r = call(service, method, path, body, headers, ids)
                assert r.status_code < 400, (path, r.status_code, r.text[:300])
        # The refresher recovered too: a record written now becomes searchable.
        put = service.client.put("/v1/capabilities/C-after-outage", headers=CLIENT_H, json={
            "title": "恢复后写入的堤防渗漏光纤监测能力", "domains": ["smart_water"]})
        assert put.status_code == 201, put.text
        service.wait_indexed({"needs": len(NEEDS[::25]) + 1, "capabilities": len(CAPS[::25]) + 1})
    finally:
        service.stop()
        service.client.close()


# ---- a full disk ------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 24 MB tmpfs for the data dir (root only); None where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path, leave_bytes: int) -> Path:
    """Take all but `leave_bytes` of the file system's free space."""
    stats, filler = os.statvfs(folder), folder / "filler.bin"
    with filler.open("wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, stats.f_bavail * stats.f_frsize - leave_bytes)
    return filler


def test_full_disk_during_a_build(tmp_path: Path, small_disk: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = small_disk / "data" if small_disk else tmp_path / "data"
    # The database lives elsewhere: this is the index running out of room, not the job log.
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", data_dir=data_dir,
                             build_index_on_start=True, refresh_interval_s=0.5)
    with TestClient(create_app(settings)) as client:
        poll(lambda: client.get("/readyz").status_code, lambda status: status == 200)
        for plural, items in (("needs", NEEDS[::10]), ("capabilities", CAPS[::10])):
            assert client.post(f"/v1/{plural}/bulk", json={"items": items}, headers=CLIENT_H).status_code == 200

        def run_reindex() -> dict[str, Any]:
            job_id = client.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H).json()["job_id"]
            return poll(lambda: client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN_H).json(),
                        lambda job: job["status"] in ("succeeded", "failed"))

        good = run_reindex()
        assert good["status"] == "succeeded", good
        previous = good["result"]["version"]
        root = versions.index_root(data_dir)
        if small_disk:
            used = sum(p.stat().st_size for p in (root / previous).rglob("*") if p.is_file())
            filler = fill(small_disk, leave_bytes=used // 3)
        else:  # no tmpfs here: the disk fills up while the vectors are written
            def no_space(*_args: Any, **_kwargs: Any) -> None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(root / "x" / "doc_vectors.npy"))

            monkeypatch.setattr(segment.np, "save", no_space)
        failed = run_reindex()
        assert failed["status"] == "failed" and "No space left on device" in failed["error"], failed
        assert not INTERNALS.search(failed["error"]), failed["error"]
        assert versions.active_version(root) == previous and not leftovers(data_dir)
        index = client.get("/v1/admin/index", headers=ADMIN_H).json()
        assert index["version"] == previous
        hits = client.post("/v1/search", json={"query": CAPS[0]["title"], "limit": 3})
        assert hits.status_code == 200 and hits.json()["index_version"] == previous

        if small_disk:
            filler.unlink()
        else:
            monkeypatch.undo()
        rerun = run_reindex()
        assert rerun["status"] == "succeeded" and rerun["result"]["version"] != previous, rerun
