"""Named locks shared by the replicas of one service (one database, one data dir).

On PostgreSQL a lock is a session advisory lock held on a connection of its own: the server
frees it the moment that connection ends, so a replica killed mid-build (kill -9, lost host)
never leaves the lock behind. On SQLite, where every replica runs beside the one database file,
it is an `flock` on a file in the data dir, which the kernel frees with the process.

The same primitive serves three purposes: one index builder at a time, one process running
migrations and seeding at a time, and telling whether the replica that owns a job still lives
(each replica holds a lock named after itself for as long as it runs).
"""
from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import zlib
from pathlib import Path

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("scenematch.locks")
# The first key of PostgreSQL's two-key advisory locks: scenematch's own namespace.
PG_LOCK_CLASS = 0x5CE0


def lock_dir(data_dir: Path) -> Path:
    """Where the file locks live (SQLite): in the data dir every replica shares."""
    return data_dir / "locks"


def _pg_key(name: str) -> int:
    """A stable signed 32-bit key for a lock name (crc32; names are few, collisions negligible)."""
    value = zlib.crc32(name.encode("utf-8"))
    return value - (1 << 32) if value >= (1 << 31) else value


def _lock_file(lock_dir: Path, name: str) -> Path:
    return lock_dir / f"{name}.lock"


class ProcessLock:
    """A lock that at most one process holds at a time; re-entrant for nobody."""

    def __init__(self, engine: Engine, lock_dir: Path, name: str):
        self.engine, self.lock_dir, self.name = engine, lock_dir, name
        self.postgres = engine.url.get_backend_name() == "postgresql"
        self._conn: Connection | None = None
        self._fd: int | None = None
        self._mutex = threading.Lock()  # threads of this process share one holder

    @property
    def held(self) -> bool:
        return self._conn is not None or self._fd is not None

    def try_acquire(self) -> bool:
        with self._mutex:
            if self.held:
                return False
            return self._acquire_pg() if self.postgres else self._acquire_file()

    def acquire(self, timeout: float, poll_s: float = 0.5) -> bool:
        """Wait up to `timeout` seconds for the lock; whether it was taken."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_s)
        return True

    def release(self) -> None:
        with self._mutex:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"),
                                 {"c": PG_LOCK_CLASS, "k": _pg_key(self.name)})
                except Exception as exc:  # the connection died: the server freed the lock with it
                    log.info("lock %s: unlock on a dead connection (%s)", self.name, type(exc).__name__)
                finally:
                    conn.close()
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)  # closing the descriptor drops the flock

    def still_held(self) -> bool:
        """Whether the lock is really still ours: a PostgreSQL restart ends the holding session."""
        if self._conn is None:
            return self._fd is not None
        try:
            self._conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    # ---- backends -----------------------------------------------------------------------
    def _acquire_pg(self) -> bool:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:c, :k)"),
                               {"c": PG_LOCK_CLASS, "k": _pg_key(self.name)}).scalar()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def _acquire_file(self) -> bool:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(_lock_file(self.lock_dir, self.name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True


def lock_is_free(engine: Engine, lock_dir: Path, name: str) -> bool:
    """Whether nobody holds the lock `name` now (checked without keeping it)."""
    probe = ProcessLock(engine, lock_dir, name)
    if not probe.try_acquire():
        return False
    probe.release()
    return True
