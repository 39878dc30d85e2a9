"""Operator API: reindex jobs, job status and the active index (admin token only)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from pydantic import BaseModel, Field, field_validator

from indexer.retrieval.engine import SearchEngine
from service import reindex
from service.deps import StateDep, require_admin
from service.errors import ApiError
from service.jobs import JobConflict
from service.schemas import StrictModel
from service.state import AppState

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing bearer token"},
    403: {"description": "Not the admin token, or admin disabled (SCENEMATCH_ADMIN_TOKEN unset)"},
}
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=AUTH_ERRORS)
JobIdPath = Path(min_length=1, max_length=64, description="Id returned by POST /v1/admin/reindex")


class ReindexRequest(StrictModel):
    mode: Literal["full", "incremental"] = Field(
        "full", description="full: re-embed everything into a new version; incremental: fold the "
                            "live delta of stored changes into a new version without re-embedding")


class JobAccepted(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued"] = "queued"
    status_url: str


class JobOut(BaseModel):
    job_id: str
    kind: str = Field(description="reindex_full, reindex_incremental, report, ...")
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(ge=0, le=1)
    params: dict[str, Any] | None = None
    result: dict[str, Any] | None = Field(None, description="While running: the current step; after: the outcome")
    error: str | None = None
    created_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_s: float | None = None

    @field_validator("created_at", "started_at", "finished_at")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        # SQLite returns the stored UTC times without their zone.
        return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


class JobList(BaseModel):
    items: list[JobOut]


def ready_engine(state: AppState) -> SearchEngine:
    engine = state.extras.get("engine")
    if not state.engine_ready or engine is None or engine.snapshot is None:
        raise ApiError(503, "not_ready", state.extras.get("not_ready_reason", "the index is not loaded yet"))
    return engine


@router.post("/reindex", status_code=202, response_model=JobAccepted,
             summary="Start a full rebuild or an incremental fold as a background job",
             responses={409: {"description": "A rebuild of this mode (or a model switch) is already running; "
                                             "the running job's id in details.job_id"},
                        503: {"description": "Index not loaded yet"}})
def start_reindex(state: StateDep, response: Response,
                  body: ReindexRequest | None = Body(None, description="Default: {\"mode\": \"full\"}")
                  ) -> dict[str, Any]:
    """The active version keeps serving every query until the new one is swapped in atomically."""
    mode = (body or ReindexRequest()).mode
    engine = ready_engine(state)
    kind = reindex.job_kind(mode)
    running = state.jobs.running(kind)
    if running is None and mode == "full" and engine.rebuilding:
        # Not a reindex job: a model switch (adaptation) is rebuilding the index.
        raise ApiError(409, "rebuild_running", "another full rebuild (model adaptation) is running; retry later",
                       {"job_id": None})
    try:
        if running is not None:
            raise JobConflict(running)
        job_id = state.jobs.submit(kind, {"mode": mode}, reindex.reindex_job(engine, mode), exclusive=kind)
    except JobConflict as conflict:
        raise ApiError(409, "reindex_running",
                       f"a {mode} rebuild is already running (job {conflict.job_id}); wait for it to finish",
                       {"job_id": conflict.job_id, "status_url": f"/v1/admin/jobs/{conflict.job_id}"}) from None
    url = f"/v1/admin/jobs/{job_id}"
    response.headers["Location"] = url
    return {"job_id": job_id, "kind": kind, "status": "queued", "status_url": url}


@router.get("/jobs/{job_id}", response_model=JobOut,
            summary="One job: status, progress 0..1, timings, result or error",
            responses={404: {"description": "Unknown job id"}})
def get_job(state: StateDep, job_id: str = JobIdPath) -> dict[str, Any]:
    job = state.jobs.get(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no job with id '{job_id}'", {"field": "job_id"})
    return job


@router.get("/jobs", response_model=JobList, summary="Recent jobs, newest first")
def list_jobs(state: StateDep, limit: int = Query(20, ge=1, le=200),
              kind: str | None = Query(None, max_length=32, description="e.g. reindex_full")) -> dict[str, Any]:
    return {"items": state.jobs.recent(limit=limit, kind=kind)}


@router.get("/index", summary="The active index: version, build time, model, counts, index types, age",
            responses={503: {"description": "Index not loaded yet"}})
def index_status(state: StateDep) -> dict[str, Any]:
    return reindex.live_status(state, ready_engine(state))
