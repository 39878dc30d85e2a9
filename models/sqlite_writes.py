"""Writers to one SQLite file take turns in arrival order, within this process.

SQLite admits one writer at a time. The others wait in its busy handler, which sleeps and polls
with growing back-off, so under many concurrent writers the lock goes to whoever polls at the
right moment: some writers wait far longer than their turn and pass the busy timeout while the
total work would have fit in it (docs/reliability.md, "Load"). A first-come-first-served queue
in front of SQLite makes the waits fair. SQLite's own lock and busy timeout still apply between
processes (a CLI command beside the service).

The queue is entered where SQLite itself would take its write lock: at a transaction's first
write statement (the sqlite3 module begins a transaction only there), and left where SQLite
releases it: at commit, rollback or close, or right after a statement outside any transaction.
"""
from __future__ import annotations

import sqlite3
import threading
from collections import deque

# Statements that take SQLite's write lock. Reads, PRAGMAs, SAVEPOINTs and a deferred BEGIN do not.
WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "BEGIN IMMEDIATE",
               "BEGIN EXCLUSIVE", "VACUUM", "REINDEX")


class FairLock:
    """A lock served strictly in arrival order, releasable from any thread.

    Any thread may release it because a session may commit on another thread than the one that
    wrote (FastAPI runs a dependency's two halves as separate thread-pool calls).
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Event] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(timeout):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait timed out
                return True
            self._waiters.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()  # handed straight to the next writer: stays held
            else:
                self._held = False

    @property
    def waiting(self) -> int:
        return len(self._waiters)


_locks: dict[str, FairLock] = {}
_locks_mutex = threading.Lock()


def lock_for(path: str) -> FairLock:
    """The one lock of a database file in this process."""
    with _locks_mutex:
        return _locks.setdefault(path, FairLock())


def is_write(sql: str) -> bool:
    return sql.lstrip()[:16].upper().startswith(WRITE_VERBS)


class FairConnection(sqlite3.Connection):
    """A sqlite3 connection whose writers queue on their file's FairLock (`sqlite3.connect(factory=…)`).

    Without `attach` it behaves as a plain connection (an in-memory database has no other writer).
    """

    write_lock: FairLock | None = None
    lock_timeout: float = 30.0
    _holds_lock = False

    def attach(self, lock: FairLock, timeout: float) -> None:
        self.write_lock, self.lock_timeout = lock, timeout

    def cursor(self, factory: type[sqlite3.Cursor] | None = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or FairCursor)

    # The connection's own shortcuts make a plain cursor in C; route them through ours.
    def execute(self, sql: str, parameters=(), /):  # noqa: ANN001, ANN201
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters, /):  # noqa: ANN001, ANN201
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /):  # noqa: ANN201
        return self.cursor().executescript(sql_script)

    def before_statement(self, sql: str) -> None:
        if self.write_lock is None or self._holds_lock or not is_write(sql):
            return
        if not self.write_lock.acquire(self.lock_timeout):
            # The message SQLite gives, so callers treat it as they treat SQLite's own busy timeout.
            raise sqlite3.OperationalError("database is locked")
        self._holds_lock = True

    def transaction_open(self) -> bool:
        try:
            return self.in_transaction
        except sqlite3.ProgrammingError:  # closed: nothing is held any more
            return False

    def after_statement(self) -> None:
        if self._holds_lock and not self.transaction_open():
            self.release_turn()  # autocommit statement done, or its BEGIN failed

    def release_turn(self) -> None:
        if self._holds_lock:
            self._holds_lock = False
            assert self.write_lock is not None
            self.write_lock.release()

    def end_transaction(self, finish) -> None:  # noqa: ANN001
        try:
            finish()
        finally:
            if not self.transaction_open():
                self.release_turn()

    def commit(self) -> None:
        self.end_transaction(super().commit)

    def rollback(self) -> None:
        self.end_transaction(super().rollback)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_turn()


class FairCursor(sqlite3.Cursor):
    def in_turn(self, sql: str, run, *args):  # noqa: ANN001, ANN201
        conn: FairConnection = self.connection  # type: ignore[assignment]
        conn.before_statement(sql)
        try:
            return run(*args)
        finally:
            conn.after_statement()

    def execute(self, sql: str, parameters=(), /):  # noqa: ANN001, ANN201
        return self.in_turn(sql, super().execute, sql, parameters)

    def executemany(self, sql: str, seq_of_parameters, /):  # noqa: ANN001, ANN201
        return self.in_turn(sql, super().executemany, sql, seq_of_parameters)

    def executescript(self, sql_script: str, /):  # noqa: ANN201
        return self.in_turn("CREATE", super().executescript, sql_script)  # a script may write anything
