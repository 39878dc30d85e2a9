"""Zero-downtime reindex: concurrent HTTP clients against a real uvicorn server during a full rebuild.

Every answer must succeed; answers come from the old version until the swap and from the
new one after the job has succeeded. The rebuild is held at its first progress report until
the clients have been answered several times, so the overlap never depends on timing.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from tests.conftest import ADMIN_H, make_settings
from tests.test_admin import wait_for_job

CLIENTS = 4
ANSWERS_WHILE_HELD = 12  # answered during the rebuild before it may continue
ANSWERS_AFTER = 3  # per client, started after the job succeeded
QUERIES = [
    ("GET", "/v1/needs/N-smart_water-001/matches", None),
    ("POST", "/v1/search", {"query": "山洪灾害监测预警平台", "target": "capabilities", "limit": 5}),
    ("GET", "/v1/capabilities/C-smart_water-002/matches", None),
    ("POST", "/v1/search", {"query": "县域医共体远程会诊", "target": "capabilities", "limit": 5}),
]


@dataclass
class Answer:
    status: int
    version: str | None
    phase: str  # "before" the rebuild started, "during" it, or "after" the job succeeded
    error: str | None = None


@dataclass
class Phases:
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    may_continue: threading.Event = field(default_factory=threading.Event)
    answered_during: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def phase(self) -> str:
        return "after" if self.finished.is_set() else "during" if self.started.is_set() else "before"

    def count_during(self) -> None:
        with self.lock:
            self.answered_during += 1
            if self.answered_during >= ANSWERS_WHILE_HELD:
                self.may_continue.set()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[str, object]]:
    """The service under uvicorn on a free 127.0.0.1 port, in a thread; yields (base URL, app)."""
    app = create_app(make_settings(tmp_path, database_url, load_demo=True, build_index_on_start=True))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    uv = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=base, timeout=60) as probe:
            deadline = time.monotonic() + 1800
            while True:
                try:
                    if probe.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and thread.is_alive(), "server never became ready"
                time.sleep(0.2)
        yield base, app
    finally:
        uv.should_exit = True
        thread.join(timeout=60)
        sock.close()


def run_client(base: str, offset: int, phases: Phases, answers: list[Answer]) -> None:
    after = 0
    with httpx.Client(base_url=base, timeout=120) as client:
        for i in range(100_000):
            method, path, body = QUERIES[(offset + i) % len(QUERIES)]
            phase = phases.phase()
            try:
                r = client.request(method, path, json=body, params=None if body else {"limit": 5})
                data = r.json()
                answers.append(Answer(r.status_code, data.get("index_version"), phase,
                                      None if r.status_code == 200 else r.text[:300]))
            except Exception as exc:  # a dropped connection is a failed request too
                answers.append(Answer(0, None, phase, f"{type(exc).__name__}: {exc}"))
            if phase == "during" and not phases.finished.is_set():
                phases.count_during()
            if phase == "after":
                after += 1
                if after >= ANSWERS_AFTER:
                    return
            if phase == "before":
                time.sleep(0.05)  # no need to hammer the server before the rebuild starts


def hold_first_progress(app, phases: Phases) -> None:  # noqa: ANN001
    """Hold the rebuild at its first progress report until the clients were answered meanwhile."""
    engine = app.state.scenematch.extras["engine"]
    real_rebuild = engine.rebuild

    def rebuild(progress=None, **kwargs):  # noqa: ANN001, ANN202
        def report(fraction: float, message: str) -> None:
            if not phases.started.is_set():
                phases.started.set()
                phases.may_continue.wait(timeout=600)
            if progress is not None:
                progress(fraction, message)

        return real_rebuild(progress=report, **kwargs)

    engine.rebuild = rebuild


def test_full_rebuild_under_concurrent_load_drops_nothing(server):
    base, app = server
    admin = httpx.Client(base_url=base, timeout=60)
    old_version = admin.get("/v1/admin/index", headers=ADMIN_H).json()["version"]
    phases = Phases()
    hold_first_progress(app, phases)
    answers: list[list[Answer]] = [[] for _ in range(CLIENTS)]
    threads = [threading.Thread(target=run_client, args=(base, n, phases, answers[n]), name=f"client-{n}")
               for n in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 600
    while not all(answers):  # every client has been answered once by the old version
        assert time.monotonic() < deadline
        time.sleep(0.05)

    accepted = admin.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H)
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(admin, accepted.json()["job_id"])
    phases.finished.set()
    for t in threads:
        t.join(timeout=600)
    assert job["status"] == "succeeded", job
    new_version = job["result"]["version"]

    flat = [a for per_client in answers for a in per_client]
    failures = [a for a in flat if a.status != 200]
    assert not failures, failures[:5]
    assert new_version != old_version
    assert {a.version for a in flat if a.phase == "before"} == {old_version}
    assert {a.version for a in flat if a.phase == "during"} <= {old_version, new_version}
    assert sum(a.phase == "during" for a in flat) >= ANSWERS_WHILE_HELD
    assert [a.version for a in flat if a.phase == "after"] == [new_version] * (CLIENTS * ANSWERS_AFTER)
    assert admin.get("/v1/admin/index", headers=ADMIN_H).json()["version"] == new_version

    metrics = admin.get("/metrics").text
    admin.close()
    found = {(s.name, frozenset(s.labels.items())): s.value
             for family in text_string_to_metric_families(metrics) for s in family.samples}

    def sample(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    info = [labels for (name, labels) in found if name == "scenematch_index_info"]
    assert [dict(labels)["version"] for labels in info] == [new_version]
    searches = sample("scenematch_http_requests_total", method="POST", route="/v1/search", status="200")
    assert searches >= 1
    assert sample("scenematch_http_requests_total", method="GET", route="/v1/needs/{record_id}/matches",
                  status="200") >= 1
    # Free-text queries are embedded on every search (never cached), so each one is timed.
    assert sample("scenematch_encoder_seconds_count", role="query") >= searches
    assert sample("scenematch_job_duration_seconds_count", kind="reindex_full", status="succeeded") == 1
    assert sample("scenematch_index_documents", kind="capabilities") == 728
    assert sample("scenematch_ready") == 1
