"""Shared fixtures: settings per test, SQLite and PostgreSQL databases, API clients."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.app import create_app
from service.settings import Settings
from tests.conftest_model import e5_model_dir  # noqa: F401  (session fixture)

ADMIN = "admin-test-token"
CLIENT = "client-test-token"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
CLIENT_H = {"Authorization": f"Bearer {CLIENT}"}
PG_ENV = "SCENEMATCH_TEST_POSTGRES_URL"


def _postgres_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url and os.environ.get("CI") == "true":
        raise RuntimeError(f"CI must provide {PG_ENV} (scripts/test.sh starts a throw-away server)")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend; PostgreSQL gets a new database per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    base = _postgres_url()
    if not base:
        pytest.skip(f"{PG_ENV} not set (scripts/test.sh sets it)")
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_settings(tmp_path: Path, database_url: str | None = None, **overrides) -> Settings:
    values = dict(data_dir=tmp_path / "data", database_url=database_url, admin_token=ADMIN,
                  client_tokens=CLIENT, load_demo=False, build_index_on_start=False,
                  # The tests were written on the classic demo; adaptation runs only when a test asks.
                  demo_corpus="classic", demo_per_domain=0, auto_adapt=False)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def api(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """A client of an app with an empty database and no search engine (records API only)."""
    with TestClient(create_app(make_settings(tmp_path, database_url))) as client:
        yield client


def wait_ready(client: TestClient, timeout: float = 1800.0) -> None:
    """Block until /readyz answers 200 (the first build of an index embeds the corpus)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.5)
    raise TimeoutError(f"service not ready: {client.get('/readyz').json()}")


@pytest.fixture(scope="session")
def demo_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The real service on SQLite with the demo corpus indexed by the real model (shared, read-only).

    Tests that write must use their own app (`make_settings` + a fresh data dir) instead.
    """
    root = tmp_path_factory.mktemp("demo")
    settings = make_settings(root, None, load_demo=True, build_index_on_start=True)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client
