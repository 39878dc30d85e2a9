"""Writers to the embedded SQLite database take turns in arrival order (models/sqlite_writes.py)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from models.database import make_engine
from models.sqlite_writes import FairConnection, FairLock, is_write


def wait_until(condition, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


# --- the lock alone -------------------------------------------------------------------------

def test_lock_hands_over_in_arrival_order():
    lock, order = FairLock(), []
    assert lock.acquire(1)
    threads = []
    for name in "abcde":
        def take(name: str = name) -> None:
            assert lock.acquire(10)
            order.append(name)
            lock.release()
        t = threading.Thread(target=take)
        t.start()
        wait_until(lambda n=len(threads) + 1: lock.waiting == n)  # queued before the next one starts
        threads.append(t)
    lock.release()
    for t in threads:
        t.join(10)
    assert order == list("abcde")
    assert lock.acquire(0), "free again once every writer is done"


def test_a_timed_out_waiter_leaves_the_queue():
    lock = FairLock()
    assert lock.acquire(1)
    assert lock.acquire(0.05) is False
    assert lock.waiting == 0
    lock.release()
    assert lock.acquire(0), "not handed to the waiter that gave up"


def test_another_thread_may_release():
    lock = FairLock()
    assert lock.acquire(1)
    t = threading.Thread(target=lock.release)
    t.start()
    t.join(5)
    assert lock.acquire(0)


@pytest.mark.parametrize("sql, writes", [
    ("INSERT INTO t VALUES (1)", True), ("  update t set a = 1", True), ("DELETE FROM t", True),
    ("CREATE TABLE x (a)", True), ("BEGIN IMMEDIATE", True), ("SELECT * FROM t", False),
    ("PRAGMA journal_mode=WAL", False), ("SAVEPOINT sp", False), ("BEGIN", False),
])
def test_which_statements_queue(sql: str, writes: bool):
    assert is_write(sql) is writes


# --- on a real SQLite file ------------------------------------------------------------------

@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'writes.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (name TEXT PRIMARY KEY)"))
    yield engine
    engine.dispose()


def lock_of(engine: Engine) -> FairLock:
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, FairConnection) and driver.write_lock is not None
        return driver.write_lock


def names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(text("SELECT name FROM t ORDER BY rowid"))]


def test_writers_commit_in_arrival_order(engine: Engine):
    lock = lock_of(engine)
    holder = engine.connect()
    holder.execute(text("INSERT INTO t VALUES ('first')"))  # holds the write turn until commit
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": name})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = []
    for i in range(6):
        t = threading.Thread(target=write, args=(f"w{i}",))
        t.start()
        wait_until(lambda n=i + 1: lock.waiting == n)
        threads.append(t)
    holder.commit()
    holder.close()
    for t in threads:
        t.join(30)
    assert not errors
    assert names(engine) == ["first", *(f"w{i}" for i in range(6))]
    assert lock.acquire(0)
    lock.release()


def test_readers_do_not_queue_behind_a_writer(engine: Engine):
    lock = lock_of(engine)
    with engine.connect() as writer:
        writer.execute(text("INSERT INTO t VALUES ('pending')"))
        with engine.connect() as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0  # WAL: the committed state
        assert lock.waiting == 0
        writer.commit()
    assert names(engine) == ["pending"]


def test_the_turn_ends_with_rollback_failure_autocommit_and_close(engine: Engine):
    lock = lock_of(engine)
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES ('a')"))
        conn.rollback()
    assert lock.acquire(0), "rollback ends the turn"
    lock.release()

    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES ('b')"))
        conn.commit()
        with pytest.raises(IntegrityError):
            conn.execute(text("INSERT INTO t VALUES ('b')"))
        conn.rollback()
    assert lock.acquire(0), "a failed write's rollback ends the turn"
    lock.release()

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("INSERT INTO t VALUES ('c')"))
        assert lock.acquire(0), "a statement outside a transaction ends its own turn"
        lock.release()

    conn = engine.connect()
    conn.execute(text("INSERT INTO t VALUES ('d')"))
    conn.invalidate()  # the DBAPI connection is closed with its transaction open
    assert lock.acquire(0), "closing a connection ends its turn"
    lock.release()
    assert names(engine) == ["b", "c"]


def test_a_writer_that_waits_too_long_gets_database_is_locked(engine: Engine):
    lock = lock_of(engine)
    holder = engine.connect()
    holder.execute(text("INSERT INTO t VALUES ('held')"))
    with engine.connect() as late:
        late.connection.driver_connection.attach(lock, 0.1)
        with pytest.raises(OperationalError, match="database is locked"):
            late.execute(text("INSERT INTO t VALUES ('late')"))
        late.rollback()
    assert lock.waiting == 0
    holder.commit()
    holder.close()
    assert lock.acquire(0), "the turn was not handed to the writer that gave up"
    lock.release()
    assert names(engine) == ["held"]


def test_engines_on_one_file_share_the_queue(engine: Engine, tmp_path: Path):
    other = make_engine(f"sqlite:///{tmp_path / 'writes.db'}")
    try:
        assert lock_of(other) is lock_of(engine)
    finally:
        other.dispose()
