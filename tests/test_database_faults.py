"""Database faults answered in-process: an exhausted pool and SQLite's busy timeout are 503 busy (retry),
not a crash or "unreachable"; the readiness probe of the database is cached and bounded."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from tests.conftest import make_settings


def test_an_exhausted_connection_pool_answers_503(tmp_path: Path) -> None:
    """More requests than connections (seen at 64 concurrent searches) is overload, not a crash."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    app = create_app(make_settings(tmp_path, None))

    def busy() -> None:
        raise PoolTimeout("QueuePool limit of size 8 overflow 16 reached, connection timed out, timeout 30.00")

    app.add_api_route("/v1/busy", busy)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/v1/busy")
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_busy", r.text
        assert r.headers["retry-after"] and "QueuePool" not in r.text


def test_sqlites_busy_timeout_answers_503_busy_not_unreachable(tmp_path: Path) -> None:
    """Writers queued past SQLite's busy timeout (seen at 64 concurrent bulk writes) are told the
    database is busy, to retry, not that it is unreachable."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    app = create_app(make_settings(tmp_path, None))

    def locked() -> None:
        raise OperationalError("INSERT INTO needs ...", {}, sqlite3.OperationalError("database is locked"))

    def gone() -> None:
        raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("unable to open database file"))

    app.add_api_route("/v1/locked", locked)
    app.add_api_route("/v1/gone", gone)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/v1/locked")
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_busy", r.text
        assert r.headers["retry-after"] and "INSERT" not in r.text
        r = client.get("/v1/gone")
        assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable", r.text


def test_the_readiness_probe_of_the_database_is_cached_and_bounded(tmp_path: Path) -> None:
    """/readyz's `SELECT 1`: a reason when it fails, and one probe per TTL however many callers ask."""
    from sqlalchemy import create_engine

    from service.readiness import DATABASE_UNREACHABLE, DatabaseProbe

    good = DatabaseProbe(create_engine(f"sqlite:///{tmp_path / 'ok.db'}"), ttl=60)
    assert good.check() is None
    gone = tmp_path / "gone"
    gone.mkdir()
    probe = DatabaseProbe(create_engine(f"sqlite:///{gone / 'db.sqlite'}"), ttl=0.3)
    assert probe.check() is None
    shutil.rmtree(gone)  # the database file and its folder vanish: connecting fails
    probes = []
    real = probe._probe
    probe._probe = lambda: probes.append(1) or real()  # type: ignore[method-assign]
    time.sleep(0.35)
    threads = [threading.Thread(target=probe.check) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert probe.check() == DATABASE_UNREACHABLE and len(probes) == 1, probes  # 17 checks, one probe
