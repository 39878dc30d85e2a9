"""Engine, sessions and schema migrations for SQLite and PostgreSQL."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from models.sqlite_writes import FairConnection, lock_for

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Every request thread (anyio's pool: 40) may hold a connection while it explains matches, plus
# the refresher, job workers and metrics; a smaller pool made 64 concurrent searches wait 30 s
# for a connection and fail (docs/reliability.md).
POOL_MAX = 56
# How long a writer waits for SQLite (and for its turn among this process's writers).
SQLITE_BUSY_S = 30.0


def make_engine(url: str) -> Engine:
    """Create an engine tuned for the backend.

    SQLite runs in WAL mode with a busy timeout so readers never block the writer
    and concurrent writers wait instead of failing with "database is locked"; the
    writers of this process wait their turn in arrival order (models/sqlite_writes.py).
    PostgreSQL gets pre-ping so a restarted server is reconnected transparently.
    """
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_S, "factory": FairConnection},
            pool_size=8,
            max_overflow=POOL_MAX - 8,
        )

        database = engine.url.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in database or database.startswith("file::memory")
        database_file = None if in_memory else str(Path(database).resolve())

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_S * 1000)}")
            cur.close()
            if database_file is not None:
                dbapi_conn.attach(lock_for(database_file), SQLITE_BUSY_S)

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=POOL_MAX - 10)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest revision (idempotent; runs on every start)."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
