"""Two real `scenematch serve` replicas on one real PostgreSQL and one data dir.

Each writes, searches, reindexes and dies as an operator's replica would behind a load
balancer: writes through one are found on the other, a full reindex started on one is a job
both see and a version both serve, readers never fail meanwhile, a replica killed mid-build
leaves the other serving and building, and a PostgreSQL restart under load is ridden out.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_H, CLIENT_H
from tests.test_faults import CAPS, NEEDS, ROOT, Service, leftovers, poll, salted

pytestmark = pytest.mark.skipif(shutil.which("pg_config") is None and not list(Path("/usr/lib/postgresql").glob("*/bin")),
                                reason="PostgreSQL server binaries are not installed")

FOLLOW_WRITE_S = 30  # the contract: a write through one replica is searchable on the others
FOLLOW_VERSION_S = 60  # and a new activation is served everywhere


class Postgres:
    """A cluster of this test's own, so it can be stopped and started under the replicas."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.url = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start", str(folder)], check=True,
                                  capture_output=True, text=True).stdout.strip()

    def stop(self) -> None:
        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", str(self.folder)], check=True,
                       capture_output=True)

    def start_again(self) -> None:
        port = make_url(self.url).port
        options = f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if not bindir or not (Path(bindir) / "pg_ctl").exists():
            bindir = str(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
        command = [f"{bindir}/pg_ctl", "-D", f"{self.folder}/data", "-o", options, "-l", f"{self.folder}/log",
                   "-w", "start"]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)


class Readers:
    """Callers matching by id on every replica until stopped; every answer's status is kept."""

    def __init__(self, services: list[Service], need_id: str):
        self.statuses: list[tuple[str, int | str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(s,), daemon=True) for s in services]
        self.need_id = need_id

    def _read(self, service: Service) -> None:
        with httpx.Client(base_url=service.base, timeout=60) as client:
            while not self._stop.is_set():
                try:
                    status: int | str = client.get(f"/v1/needs/{self.need_id}/matches", params={"limit": 5}).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                self.statuses.append((service.base, status))
                time.sleep(0.05)

    def __enter__(self) -> "Readers":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def failed(self, allowed: tuple[int, ...] = (200,)) -> list[tuple[str, int | str]]:
        return [s for s in self.statuses if s[1] not in allowed]


def put_capability(service: Service, record: dict[str, Any]) -> None:
    body = {k: v for k, v in record.items() if k != "id"}
    r = service.client.put(f"/v1/capabilities/{record['id']}", json=body, headers=CLIENT_H)
    assert r.status_code == 201, r.text


def served_version(service: Service) -> str | None:
    return service.client.get("/v1/admin/index", headers=ADMIN_H).json().get("version")


def found(service: Service, title: str, record_id: str) -> bool:
    items = service.client.post("/v1/search", json={"query": title, "target": "capabilities", "limit": 5}).json()
    return record_id in [m["id"] for m in items.get("items", [])]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Postgres, Service, Service]]:
    root = tmp_path_factory.mktemp("replicas")
    # Not under pytest's private temp folder: the server runs as the postgres user when we are root.
    pg = Postgres(Path(tempfile.mkdtemp(prefix="scenematch-replicas-pg-")))
    env = {"SCENEMATCH_DATABASE_URL": pg.url}
    a, b = Service(root / "data", **env), Service(root / "data", **env)
    try:
        a.start()
        a.bulk("needs", NEEDS[::20])
        a.bulk("capabilities", CAPS[::20])
        assert a.wait_job(a.reindex())["status"] == "succeeded"
        b.start()  # on the same database and data dir: loads the version A built
        assert served_version(b) == served_version(a)
        yield pg, a, b
    finally:
        for service in (a, b):
            service.stop()
            service.client.close()
        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", str(pg.folder)], capture_output=True)
        shutil.rmtree(pg.folder, ignore_errors=True)


def test_a_write_through_one_replica_is_found_on_the_other(cluster: tuple[Postgres, Service, Service]) -> None:
    _, a, b = cluster
    record = salted(CAPS[1:2], uuid.uuid4().hex[:8], "C-replica")[0]
    put_capability(a, record)
    poll(lambda: found(b, record["title"], record["id"]), bool, timeout=FOLLOW_WRITE_S, every=0.5)
    record2 = salted(CAPS[2:3], uuid.uuid4().hex[:8], "C-replica-b")[0]
    put_capability(b, record2)
    poll(lambda: found(a, record2["title"], record2["id"]), bool, timeout=FOLLOW_WRITE_S, every=0.5)


def test_a_reindex_on_one_replica_is_a_job_both_see_and_a_version_both_serve(
        cluster: tuple[Postgres, Service, Service]) -> None:
    _, a, b = cluster
    before = served_version(a)
    with Readers([a, b], NEEDS[0]["id"]) as readers:
        job_id = a.reindex()
        seen = b.job(job_id)
        assert seen["job_id"] == job_id and seen["kind"] == "reindex_full", seen
        conflict = b.client.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H)
        if b.job(job_id)["status"] in ("queued", "running"):  # one reindex at a time across replicas
            assert conflict.status_code == 409 and conflict.json()["error"]["details"]["job_id"] == job_id
        done = b.wait_job(job_id)
        assert done["status"] == "succeeded", done
        new = done["result"]["version"]
        assert new != before
        poll(lambda: (served_version(a), served_version(b)), lambda v: v == (new, new), timeout=FOLLOW_VERSION_S)
        time.sleep(1)  # a few reads on the new version too
    assert readers.statuses and not readers.failed(), readers.failed()[:5]


def test_a_replica_killed_during_a_build_leaves_the_other_serving_and_building(
        cluster: tuple[Postgres, Service, Service]) -> None:
    _, a, b = cluster
    previous = served_version(a)
    b.bulk("capabilities", salted(CAPS[::15], uuid.uuid4().hex[:8], "C-kill"))  # real model work
    job_id = b.reindex()
    b.wait_running(job_id)
    with Readers([a], NEEDS[0]["id"]) as readers:
        b.kill9()
        # The builder role died with B's database session: A takes it at once, and B's job is over.
        # (PostgreSQL ends B's session as soon as it reads the closed socket: allow it a moment.)
        rerun = poll(lambda: a.client.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H),
                     lambda r: r.status_code != 409, timeout=10)
        assert rerun.status_code == 202, rerun.text
        assert a.job(job_id)["status"] == "failed" and "interrupted" in a.job(job_id)["error"]
        done = a.wait_job(rerun.json()["job_id"])
    assert done["status"] == "succeeded", done
    assert served_version(a) == done["result"]["version"] != previous
    assert readers.statuses and not readers.failed(), readers.failed()[:5]
    b.start()  # comes back on the version A activated; B's half-written folder is cleaned up
    assert served_version(b) == done["result"]["version"] and not leftovers(b.data_dir)


def test_postgres_restarted_under_load(cluster: tuple[Postgres, Service, Service]) -> None:
    pg, a, b = cluster
    with Readers([a, b], NEEDS[0]["id"]) as readers:
        time.sleep(1)
        pg.stop()
        for service in (a, b):  # unready while the database does not answer
            poll(lambda s=service: s.client.get("/readyz").status_code, lambda code: code == 503, timeout=30)
        pg.start_again()
        for service in (a, b):
            poll(lambda s=service: s.client.get("/readyz").status_code, lambda code: code == 200, timeout=60)
        time.sleep(1)
    # Requests during the outage answer 503, never a 500 or a dropped connection.
    assert not readers.failed(allowed=(200, 503)), readers.failed(allowed=(200, 503))[:5]
    assert readers.statuses[-1][1] == 200
    record = salted(CAPS[3:4], uuid.uuid4().hex[:8], "C-after-restart")[0]
    put_capability(b, record)
    poll(lambda: found(a, record["title"], record["id"]), bool, timeout=FOLLOW_WRITE_S, every=0.5)
    # Jobs still run, and the builder role is free again after the restart.
    assert a.wait_job(a.reindex())["status"] == "succeeded"
