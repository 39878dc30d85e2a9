"""Background jobs (reindex, reports, adaptation) persisted in the database.

A job row is written before the work starts and updated as it progresses, so its
status survives the process and every replica sharing the database sees it. Each row names
the replica that runs it (`owner`): a job found queued or running whose owner is gone
belonged to a process that died and is marked failed. "One at a time" (`exclusive`) is
checked in the database too, so it holds across replicas.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.database import session_scope
from models.db import Job

log = logging.getLogger("scenematch.jobs")
ACTIVE_STATUSES = ("queued", "running")
INTERRUPTED = "interrupted: the service stopped while this job was running"


class JobConflict(Exception):
    """Another job with the same exclusive key is queued or running."""

    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# An absolute path of two or more parts, e.g. /srv/scenematch/var/index/.tmp-v1/dense.faiss.
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[^\s'\"/:]+){2,}/?")


def public_error(exc: BaseException) -> str:
    """Why a job failed, for the API: the reason without the folders of this machine."""
    if isinstance(exc, OSError) and exc.strerror:
        name = Path(str(exc.filename)).name if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror}" + (f" ({name})" if name else "")
    return ABSOLUTE_PATH.sub(lambda m: Path(m.group(0)).name or "/", f"{type(exc).__name__}: {exc}")


def job_dict(job: Job) -> dict[str, Any]:
    return {
        "job_id": job.id, "kind": job.kind, "status": job.status, "progress": round(job.progress, 4),
        "params": job.params, "result": job.result, "error": job.error,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
        "duration_s": (job.finished_at - job.started_at).total_seconds()
        if job.finished_at and job.started_at else None,
    }


@dataclass
class JobContext:
    job_id: str
    params: dict[str, Any]
    _runner: "JobRunner"
    message: str = ""

    def progress(self, fraction: float, message: str = "") -> None:
        self.message = message
        self._runner._progress(self.job_id, fraction, message)


JobFn = Callable[[JobContext], dict[str, Any] | None]


class JobRunner:
    """Runs jobs in a thread pool; `owner` names this process, `owner_alive(owner)` tells whether
    the process named `owner` still runs (default: only this one, i.e. a lone process)."""

    def __init__(self, sessions: sessionmaker[Session], workers: int = 2,
                 on_finish: Callable[[str, str, float], None] | None = None,
                 owner: str | None = None, owner_alive: Callable[[str], bool] | None = None):
        self.sessions = sessions
        self.owner = owner or uuid.uuid4().hex
        self._owner_alive = owner_alive
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._exclusive: dict[str, str] = {}  # exclusive key -> job id
        self._last_write: dict[str, float] = {}
        self.on_finish = on_finish

    def alive(self, owner: str | None) -> bool:
        if owner == self.owner:
            return True
        if owner is None or self._owner_alive is None:
            return False
        return self._owner_alive(owner)

    def recover(self) -> int:
        """Mark jobs left queued or running by a process that is gone as failed."""
        with session_scope(self.sessions) as session:
            active = session.execute(select(Job.id, Job.owner).where(Job.status.in_(ACTIVE_STATUSES))).all()
            orphans = [job_id for job_id, owner in active if not self.alive(owner)]
            if orphans:
                session.execute(update(Job).where(Job.id.in_(orphans), Job.status.in_(ACTIVE_STATUSES))
                                .values(status="failed", error=INTERRUPTED, finished_at=utcnow()))
            return len(orphans)

    def _active_elsewhere(self, session: Session, exclusive: str) -> str | None:
        """The id of a live job with this exclusive key run by another replica, if any."""
        rows = session.execute(select(Job.id, Job.owner).where(
            Job.exclusive_key == exclusive, Job.status.in_(ACTIVE_STATUSES), Job.owner != self.owner)).all()
        for job_id, owner in rows:
            if self.alive(owner):
                return job_id
            session.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
                            .values(status="failed", error=INTERRUPTED, finished_at=utcnow()))
        return None

    def submit(self, kind: str, params: dict[str, Any], fn: JobFn, exclusive: str | None = None) -> str:
        job_id = uuid.uuid4().hex
        with self._lock:
            if exclusive is not None and exclusive in self._exclusive:
                raise JobConflict(self._exclusive[exclusive])
            with session_scope(self.sessions) as session:
                if exclusive is not None and (other := self._active_elsewhere(session, exclusive)):
                    raise JobConflict(other)
                session.add(Job(id=job_id, kind=kind, status="queued", progress=0.0, params=params,
                                owner=self.owner, exclusive_key=exclusive))
            if exclusive is not None:
                self._exclusive[exclusive] = job_id
        self._pool.submit(self._run, job_id, kind, params, fn, exclusive)
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        with session_scope(self.sessions) as session:
            job = session.get(Job, job_id)
            return job_dict(job) if job else None

    def recent(self, limit: int = 20, kind: str | None = None) -> list[dict[str, Any]]:
        with session_scope(self.sessions) as session:
            stmt = select(Job).order_by(Job.created_at.desc()).limit(limit)
            if kind:
                stmt = stmt.where(Job.kind == kind)
            return [job_dict(j) for j in session.scalars(stmt)]

    def running(self, exclusive: str) -> str | None:
        """The job with this exclusive key queued or running here or on another replica."""
        with self._lock:
            if exclusive in self._exclusive:
                return self._exclusive[exclusive]
        with session_scope(self.sessions) as session:
            return self._active_elsewhere(session, exclusive)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- internals ------------------------------------------------------------------
    def _run(self, job_id: str, kind: str, params: dict[str, Any], fn: JobFn, exclusive: str | None) -> None:
        start = time.perf_counter()
        status = "failed"
        try:
            self._set(job_id, status="running", started_at=utcnow())
            result = fn(JobContext(job_id, params, self))
            self._set(job_id, status="succeeded", progress=1.0, result=result or {}, finished_at=utcnow())
            status = "succeeded"
        except Exception as exc:
            log.error("job %s (%s) failed: %s\n%s", job_id, kind, exc, traceback.format_exc())
            # The message is shown to operators: the exception text, never a traceback or path dump.
            self._set(job_id, status="failed", error=public_error(exc)[:2000], finished_at=utcnow())
        finally:
            with self._lock:
                if exclusive is not None and self._exclusive.get(exclusive) == job_id:
                    del self._exclusive[exclusive]
            self._last_write.pop(job_id, None)
            if self.on_finish is not None:
                self.on_finish(kind, status, time.perf_counter() - start)

    def _progress(self, job_id: str, fraction: float, message: str) -> None:
        now = time.monotonic()
        # Throttled: progress callbacks can fire per batch, the database needs far fewer writes.
        if now - self._last_write.get(job_id, 0.0) < 0.5 and fraction < 1.0:
            return
        self._last_write[job_id] = now
        self._set(job_id, progress=max(0.0, min(1.0, fraction)),
                  result={"message": message} if message else None)

    def _set(self, job_id: str, **values: Any) -> None:
        with session_scope(self.sessions) as session:
            session.execute(update(Job).where(Job.id == job_id).values(**values))
