"""The database part of `/readyz`: a cheap `SELECT 1`, bounded in time and cached.

Probes come from load balancers and orchestrators, often several per second and all at once
when the service is busy, so the answer is cached for `TTL_S` and only one thread probes at a
time (the others wait for its answer). The probe does not borrow from the request pool: it
opens its own connection with a short connect and statement timeout (NullPool), so a
saturated pool neither delays the probe nor loses a connection to it, and a blackholed
database host answers "not ready" in seconds rather than after the TCP timeout.
"""
from __future__ import annotations

import logging
import math
import threading
import time

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

log = logging.getLogger("scenematch.readiness")

TTL_S = 1.5  # how long one probe's answer is reused
TIMEOUT_S = 2.0  # connect + SELECT 1; libpq's connect_timeout is whole seconds, at least 2

DATABASE_UNREACHABLE = "database_unreachable"


def probe_engine(engine: Engine, timeout: float = TIMEOUT_S) -> Engine:
    """An engine on the same database as `engine` whose connections give up after `timeout`."""
    url = engine.url
    if url.get_backend_name() == "postgresql":
        connect_args: dict[str, object] = {
            "connect_timeout": max(2, math.ceil(timeout)),
            "options": f"-c statement_timeout={int(timeout * 1000)}",
        }
    elif url.get_backend_name() == "sqlite":
        connect_args = {"timeout": timeout, "check_same_thread": False}
    else:
        connect_args = {}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


class DatabaseProbe:
    """`check()` → None when `SELECT 1` succeeds, else a short public reason (no driver text)."""

    def __init__(self, engine: Engine, ttl: float = TTL_S, timeout: float = TIMEOUT_S):
        self._engine = probe_engine(engine, timeout)
        self._ttl = ttl
        self._lock = threading.Lock()  # one probe in flight
        self._last: tuple[float, str | None] = (-math.inf, None)  # (monotonic time, reason)

    def check(self) -> str | None:
        at, reason = self._last
        if time.monotonic() - at < self._ttl:
            return reason
        with self._lock:
            at, reason = self._last
            if time.monotonic() - at < self._ttl:  # another thread probed while we waited
                return reason
            new = self._probe()
            if new != reason:  # log the changes, not every probe
                log.warning("readiness: database %s", "reachable again" if new is None else "unreachable")
            self._last = (time.monotonic(), new)
            return new

    def _probe(self) -> str | None:
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means requests would fail too
            log.debug("readiness probe failed: %s", type(exc).__name__)
            return DATABASE_UNREACHABLE
        return None
