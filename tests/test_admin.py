"""Admin API on both databases: auth matrix, reindex job lifecycle, crash recovery, index status."""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from indexer.ranking.hybrid import RankingModel
from models.db import Job
from service.app import create_app
from service.jobs import INTERRUPTED
from tests.conftest import ADMIN_H, CLIENT_H, make_settings, wait_ready

WRONG_H = {"Authorization": "Bearer not-the-admin-token"}
TERMINAL = ("succeeded", "failed")


def wait_for_job(client, job_id: str, statuses: tuple[str, ...] = TERMINAL,  # noqa: ANN001
                 headers: dict[str, str] = ADMIN_H, timeout: float = 600.0) -> dict:
    """Poll the job until it reaches one of `statuses` (the timeout only guards against a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/admin/jobs/{job_id}", headers=headers).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never reached {statuses}")


def wait_until(predicate, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError("condition never became true")


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """A real service of its own (writable) with the demo corpus indexed; embeddings come from the cache."""
    settings = make_settings(tmp_path, database_url, load_demo=True, build_index_on_start=True)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


def hold_rebuild(client: TestClient) -> tuple[threading.Event, list[float]]:
    """Make the next full rebuild wait for the returned event; record the progress it reports."""
    engine = client.app.state.scenematch.extras["engine"]
    release, seen = threading.Event(), []
    real_rebuild = engine.rebuild

    def held(progress=None, **kwargs):  # noqa: ANN001, ANN202
        release.wait(timeout=600)

        def record(fraction: float, message: str) -> None:
            seen.append(fraction)
            if progress is not None:
                progress(fraction, message)

        return real_rebuild(progress=record, **kwargs)

    engine.rebuild = held
    return release, seen


def admin_calls(job_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("POST", "/v1/admin/reindex", {"mode": "incremental"}),
        ("GET", f"/v1/admin/jobs/{job_id}", None),
        ("GET", "/v1/admin/jobs?limit=5", None),
        ("GET", "/v1/admin/index", None),
        ("GET", "/v1/admin/feedback/export?format=csv", None),
        ("GET", "/v1/admin/feedback/report", None),
    ]


def test_auth_matrix_over_every_admin_route(served: TestClient, tmp_path: Path, database_url: str):
    job_id = served.post("/v1/admin/reindex", json={"mode": "incremental"}, headers=ADMIN_H).json()["job_id"]
    wait_for_job(served, job_id)
    # Every documented admin operation (other issues add some too) is refused without the admin token.
    every_route = sorted((method.upper(), re.sub(r"\{[^}]+\}", "some-id", path))
                         for path, ops in served.app.openapi()["paths"].items()
                         if path.startswith("/v1/admin") for method in ops)
    ours = [(method, path.split("?")[0].replace(job_id, "some-id")) for method, path, _ in admin_calls(job_id)]
    assert set(ours) <= set(every_route)
    for method, path in every_route:
        missing = served.request(method, path, json={})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized", path
        wrong = served.request(method, path, json={}, headers=WRONG_H)
        assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden", path
        client_token = served.request(method, path, json={}, headers=CLIENT_H)
        assert client_token.status_code == 403, f"{path}: a client (writer) token is not an admin token"
    for method, path, body in admin_calls(job_id):
        right = served.request(method, path, json=body, headers=ADMIN_H)
        assert 200 <= right.status_code < 300, (path, right.text)
        if right.status_code == 202:
            wait_for_job(served, right.json()["job_id"])

    disabled = make_settings(tmp_path / "disabled", database_url, admin_token=None)
    with TestClient(create_app(disabled)) as client:
        for method, path in every_route:
            for headers in ({}, ADMIN_H, WRONG_H):
                r = client.request(method, path, json={}, headers=headers)
                assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled", path


def test_full_reindex_job_lifecycle(served: TestClient, database_url: str):
    old_version = served.get("/v1/admin/index", headers=ADMIN_H).json()["version"]
    release, progress_seen = hold_rebuild(served)

    accepted = served.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert accepted.json()["status"] == "queued" and accepted.headers["location"] == f"/v1/admin/jobs/{job_id}"
    running = wait_for_job(served, job_id, ("running", *TERMINAL))
    assert running["status"] == "running" and running["started_at"] and running["finished_at"] is None

    second = served.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H)
    assert second.status_code == 409 and second.json()["error"]["details"]["job_id"] == job_id
    # Queries keep being answered from the active version meanwhile.
    during = served.get("/v1/needs/N-smart_water-001/matches", params={"limit": 3})
    assert during.status_code == 200 and during.json()["index_version"] == old_version

    release.set()
    done = wait_for_job(served, job_id)
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0 and done["error"] is None and done["duration_s"] >= 0
    assert progress_seen and progress_seen == sorted(progress_seen) and progress_seen[-1] == 1.0
    new_version = done["result"]["version"]
    assert new_version != old_version and done["result"]["previous_version"] == old_version
    assert done["result"]["counts"] == {"needs": 374, "capabilities": 728, "scenarios": 108}
    assert served.get("/v1/admin/index", headers=ADMIN_H).json()["version"] == new_version
    after = served.get("/v1/needs/N-smart_water-001/matches", params={"limit": 3}).json()
    assert after["index_version"] == new_version
    listed = served.get("/v1/admin/jobs", params={"kind": "reindex_full"}, headers=ADMIN_H).json()["items"]
    assert [j["job_id"] for j in listed] == [job_id]

    db = create_engine(database_url)
    try:
        with Session(db) as session:
            row = session.scalars(select(Job).where(Job.id == job_id)).one()
            assert (row.status, row.progress, row.kind) == ("succeeded", 1.0, "reindex_full")
            assert row.result["version"] == new_version and row.finished_at >= row.started_at
    finally:
        db.dispose()


def test_incremental_reindex_folds_stored_changes(served: TestClient):
    before = served.get("/v1/admin/index", headers=ADMIN_H).json()
    need = {"title": "宜昌港集装箱码头智能理货", "description": "用机器视觉自动识别箱号与残损, 替代人工理货。",
            "domain": "smart_logistics", "region": "宜昌市"}
    assert served.put("/v1/needs/N-new-1", json=need, headers=CLIENT_H).status_code == 201
    wait_until(lambda: served.get("/v1/admin/index", headers=ADMIN_H).json()["delta"]["records"]["needs"] == 1)
    live = served.get("/v1/admin/index", headers=ADMIN_H).json()
    assert live["version"] == before["version"] and live["counts"]["needs"] == before["counts"]["needs"] + 1

    job_id = served.post("/v1/admin/reindex", json={"mode": "incremental"}, headers=ADMIN_H).json()["job_id"]
    done = wait_for_job(served, job_id)
    assert done["status"] == "succeeded" and done["result"]["folded"] is True, done
    after = served.get("/v1/admin/index", headers=ADMIN_H).json()
    assert after["version"] == done["result"]["version"] != before["version"]
    assert after["mode"] == "incremental" and after["delta"]["records"] == {"needs": 0, "capabilities": 0, "scenarios": 0}
    assert after["indexed_counts"]["needs"] == before["indexed_counts"]["needs"] + 1
    assert served.get("/v1/needs/N-new-1/matches").json()["index_version"] == after["version"]


def test_index_status_shows_version_model_counts_and_types(served: TestClient):
    r = served.get("/v1/admin/index", headers=ADMIN_H)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"].startswith("v") and body["built_at"] and body["age_s"] >= 0
    assert body["model"].startswith("multilingual-e5-small") and body["dim"] == 384
    assert body["counts"] == {"needs": 374, "capabilities": 728, "scenarios": 108} == body["stored_counts"]
    assert set(body["index_types"]["dense"]) == {"needs", "capabilities", "scenarios"}
    assert all(d["type"] for d in body["index_types"]["dense"].values())
    assert body["index_types"]["lexical"]["type"] == "bm25"
    assert body["watermark"] == body["served_watermark"] and body["pending_changes"] == 0
    assert body["manifest"]["version"] == body["version"] and body["rebuilding"] is False
    shipped = RankingModel.load()
    assert body["ranking"] == {"weights": shipped.weights, "bias": shipped.bias, "source": "shipped",
                               "untagged": {"weights": shipped.untagged.weights, "bias": shipped.untagged.bias}}


def test_admin_index_and_reindex_answer_503_before_the_engine_is_ready(tmp_path: Path, database_url: str):
    with TestClient(create_app(make_settings(tmp_path, database_url))) as client:
        for method, path in (("POST", "/v1/admin/reindex"), ("GET", "/v1/admin/index")):
            r = client.request(method, path, headers=ADMIN_H)
            assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready", path
        assert client.get("/v1/admin/jobs", headers=ADMIN_H).json() == {"items": []}
        r = client.get("/v1/admin/jobs/nope", headers=ADMIN_H)
        assert r.status_code == 404 and r.json()["error"]["details"]["field"] == "job_id"


def test_bad_reindex_mode_is_a_clear_422(tmp_path: Path, database_url: str):
    with TestClient(create_app(make_settings(tmp_path, database_url))) as client:
        r = client.post("/v1/admin/reindex", json={"mode": "partial"}, headers=ADMIN_H)
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "mode"
        r = client.post("/v1/admin/reindex", json={"mode": "full", "force": True}, headers=ADMIN_H)
        assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "force"


def test_jobs_running_when_the_process_died_are_failed_at_next_start(tmp_path: Path, database_url: str):
    settings = make_settings(tmp_path, database_url)
    with TestClient(create_app(settings)) as client:
        sessions = client.app.state.scenematch.sessions
        with sessions.begin() as session:
            session.add(Job(id="crashed-running", kind="reindex_full", status="running", progress=0.4,
                            params={"mode": "full"}))
            session.add(Job(id="crashed-queued", kind="reindex_incremental", status="queued", progress=0.0,
                            params={"mode": "incremental"}))
            session.add(Job(id="finished-before", kind="reindex_full", status="succeeded", progress=1.0,
                            params={"mode": "full"}))
    # A fresh app on the same database and data dir is the process after the crash.
    with TestClient(create_app(settings)) as client:
        for job_id in ("crashed-running", "crashed-queued"):
            job = client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN_H).json()
            assert job["status"] == "failed" and job["error"] == INTERRUPTED and job["finished_at"], job
        assert client.get("/v1/admin/jobs/finished-before", headers=ADMIN_H).json()["status"] == "succeeded"
        assert client.get("/v1/admin/jobs/crashed-running", headers=ADMIN_H).json()["progress"] == 0.4


def test_cli_mirrors_the_admin_api(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from service.cli import app as cli

    settings = make_settings(tmp_path, database_url, load_demo=True)
    for name, value in (("DATA_DIR", str(settings.data_dir)), ("DATABASE_URL", settings.resolved_database_url),
                        ("LOAD_DEMO", "true"), ("DEMO_CORPUS", "classic"), ("DEMO_PER_DOMAIN", "0"),
                        ("AUTO_ADAPT", "false")):
        monkeypatch.setenv(f"SCENEMATCH_{name}", value)
    run = CliRunner().invoke
    assert run(cli, ["index-status"]).exit_code == 1  # nothing built yet
    assert run(cli, ["reindex", "--incremental"]).exit_code == 1  # nothing to fold into

    built = run(cli, ["reindex", "--full"])
    assert built.exit_code == 0, built.output
    status = json.loads(run(cli, ["index-status", "--json"]).output)
    assert status["indexed_counts"] == status["stored_counts"] == {"needs": 374, "capabilities": 728, "scenarios": 108}
    assert status["mode"] == "full" and status["index_types"]["dense"]["needs"]["type"]
    [job] = json.loads(run(cli, ["jobs", "--json", "--kind", "reindex_full"]).output)
    assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["params"]["source"] == "cli"
    assert job["result"]["version"] == status["version"]
    assert json.loads(run(cli, ["jobs", job["job_id"]]).output)["job_id"] == job["job_id"]
    assert run(cli, ["jobs", "no-such-job"]).exit_code == 1
    assert run(cli, ["reindex", "--incremental"]).exit_code == 0

    # A reindex job recorded as running (a live service, or a dead one) stops the CLI unless forced.
    db = create_engine(database_url)
    try:
        with Session(db) as session, session.begin():
            session.add(Job(id="service-job", kind="reindex_full", status="running", progress=0.2, params={}))
        refused = run(cli, ["reindex", "--full"])
        assert refused.exit_code == 1 and "service-job" in refused.output
        assert run(cli, ["reindex", "--full", "--force"]).exit_code == 0
        with Session(db) as session:
            assert session.get(Job, "service-job").status == "failed"  # recovered by the CLI's start-up
    finally:
        db.dispose()
