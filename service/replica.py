"""This process as one replica among several sharing one database and one data dir.

A replica has a name (`owner`, written on the jobs it runs) and holds a lock named after itself
for as long as it lives (models/locks.py), so any other replica can tell that a job's owner is
gone the moment its process or its database session ends. Start-up work that must not run
twice at once (migrations, seeding the taxonomy, loading the demo corpus) runs under a shared
start-up lock.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine

from models.locks import ProcessLock, lock_dir, lock_is_free

log = logging.getLogger("scenematch.replica")
# How long a starting replica waits for another one's start-up work (migrations, demo load).
STARTUP_WAIT_S = 600.0
# How often the liveness lock is checked (a PostgreSQL restart ends the session holding it).
KEEP_ALIVE_S = 5.0


class Replica:
    def __init__(self, engine: Engine, data_dir: Path):
        self.engine, self.locks = engine, lock_dir(data_dir)
        self.owner = f"{socket.gethostname()[:48]}-{os.getpid()}-{secrets.token_hex(4)}"
        self._alive = ProcessLock(engine, self.locks, self._lock_name(self.owner))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _lock_name(owner: str) -> str:
        return f"replica-{owner}"

    @contextmanager
    def starting(self) -> Iterator[None]:
        """Hold the start-up lock (one replica migrates and seeds at a time)."""
        lock = ProcessLock(self.engine, self.locks, "startup")
        if not lock.acquire(STARTUP_WAIT_S):
            raise TimeoutError("another replica has been starting for too long (start-up lock)")
        try:
            yield
        finally:
            lock.release()

    def register(self) -> None:
        """Take this replica's liveness lock and keep it (re-taken after a database restart)."""
        if not self._alive.try_acquire():
            raise RuntimeError(f"replica name {self.owner} is taken")
        self._thread = threading.Thread(target=self._keep_alive, name="replica-alive", daemon=True)
        self._thread.start()

    def owner_alive(self, owner: str) -> bool:
        if owner == self.owner:
            return True
        try:
            free = lock_is_free(self.engine, self.locks, self._lock_name(owner))
        except Exception:  # the database does not answer: do not declare anybody dead
            return True
        if free and not self._alive.postgres:  # a dead replica's lock file: nobody will take it again
            (self.locks / f"{self._lock_name(owner)}.lock").unlink(missing_ok=True)
        return not free

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._alive.release()

    def _keep_alive(self) -> None:
        while not self._stop.wait(KEEP_ALIVE_S):
            if self._alive.still_held():
                continue
            self._alive.release()
            try:
                if self._alive.try_acquire():
                    log.warning("replica %s: liveness lock taken again after losing the database", self.owner)
            except Exception as exc:  # the database is still away: the next round retries
                log.info("replica %s: database not back yet (%s)", self.owner, type(exc).__name__)
