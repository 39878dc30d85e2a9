"""Batch match reports: create as a job, follow its progress, download the file."""
from typing import Any

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import FileResponse

from models.database import session_scope
from service.deps import AdminViewDep, StateDep, require_writer
from service.errors import ApiError
from service.reports import storage
from service.reports import cycle
from service.reports.cycle_job import cycle_job, monthly_plan
from service.reports.job import ReportPlan, report_job
from service.reports.schemas import ReportAccepted, ReportRequest, ReportStatus, request_problems
from service.reports.selection import EmptySelection, SelectionTooLarge, select_needs
from service.routes.matching import get_matcher
from service.state import AppState

router = APIRouter(prefix="/v1/reports", tags=["reports"], dependencies=[Depends(require_writer)])
AUTH = ("Needs `Authorization: Bearer <token>` (admin or client token): reports are reads, but "
        "generating a file costs minutes of CPU. Reports with `include_restricted` (restricted records "
        "and contacts) need the admin token to create, follow and download.")
ERRORS = {401: {"description": "Missing token"}, 403: {"description": "Token not allowed"},
          404: {"description": "Unknown report id"}, 422: {"description": "Invalid input (named in details)"}}
JobIdPath = Path(pattern=storage.JOB_ID.pattern, description="The job id returned by POST /v1/reports")
# Reports share the job workers with reindexing; more than this many waiting is a client looping.
MAX_ACTIVE_REPORTS = 4


def _active_reports(state: AppState) -> int:
    return sum(1 for job in state.jobs.recent(limit=50, kind="report") if job["status"] in ("queued", "running"))


@router.post("", status_code=202, response_model=ReportAccepted, summary="Create a match report (a job)",
             description="Selects needs by `need_ids` or by `filters` and writes, for each, its best "
             "`per_need` capabilities with explanations as XLSX, CSV (UTF-8 with BOM), JSONL or HTML. "
             "Unknown or hidden need ids are listed in `unknown_need_ids`; a selection without any need "
             "answers 422. " + AUTH,
             responses={**ERRORS, 429: {"description": "Too many reports in progress"},
                        503: {"description": "Index not loaded yet"}})
def create_report(body: ReportRequest, response: Response, state: StateDep,
                  admin: AdminViewDep) -> dict[str, Any]:
    problems = request_problems(body)
    if problems:
        raise ApiError(422, "validation_error", "invalid input: " + ", ".join(p["field"] for p in problems), problems)
    if body.include_restricted and not admin:
        raise ApiError(403, "forbidden", "include_restricted needs the admin token",
                       [{"field": "include_restricted", "reason": "admin token required"}])
    matcher = get_matcher(state)
    storage.cleanup(state.settings.data_dir, state.settings.report_retention_days)
    if _active_reports(state) >= MAX_ACTIVE_REPORTS:
        raise ApiError(429, "too_many_reports",
                       f"{MAX_ACTIVE_REPORTS} reports are already being generated; retry when one is done")
    if body.kind in ("quarterly", "annual"):
        return _submit_cycle(state, body, response, matcher)
    field = {"matches": "need_ids" if body.need_ids is not None else "filters", "monthly": "period"}[body.kind]
    with session_scope(state.sessions) as session:
        try:
            if body.kind == "monthly":
                plan = monthly_plan(session, state.taxonomy, body)
            else:
                plan = ReportPlan(body, select_needs(session, state.taxonomy, body.need_ids, body.filters,
                                                     body.include_restricted))
            selection = plan.selection
            plan.weights = state.settings.evaluation_weights
        except EmptySelection as exc:
            raise ApiError(422, "empty_selection", f"the report selects no need: check {field}",
                           [{"field": field, "reason": "no known need visible to the caller matches",
                             "unknown_need_ids": exc.unknown_ids}]) from None
        except SelectionTooLarge as exc:
            raise ApiError(422, "selection_too_large",
                           f"the filters select more than {exc.limit} needs: narrow them (domain, region, dates)",
                           [{"field": "filters", "reason": f"more than {exc.limit} needs"}]) from None
    params = {**body.model_dump(mode="json"), "needs": len(selection.need_ids),
              "unknown_need_ids": selection.unknown_ids}
    job_id = state.jobs.submit("report", params, report_job(
        state.sessions, matcher, state.taxonomy, plan, state.settings.data_dir,
        state.settings.report_retention_days))
    return _accepted(response, job_id, body, len(selection.need_ids), selection.unknown_ids)


def _accepted(response: Response, job_id: str, body: ReportRequest, needs: int,
              unknown: list[str]) -> dict[str, Any]:
    response.headers["Location"] = f"/v1/reports/{job_id}"
    return {"job_id": job_id, "status": "queued", "kind": body.kind, "period": body.period, "format": body.format,
            "needs": needs, "unknown_need_ids": unknown, "status_url": f"/v1/reports/{job_id}",
            "file_url": f"/v1/reports/{job_id}/file"}


def _submit_cycle(state: AppState, body: ReportRequest, response: Response, matcher: Any) -> dict[str, Any]:
    """A quarterly or annual report: its period selects the needs (quarterly) or scenarios (annual)."""
    needs = 0
    if body.kind == "quarterly":
        period = cycle.parse_period(body.kind, body.period or "")
        domains = list(body.filters.domain) if body.filters else []
        with session_scope(state.sessions) as session:
            needs = len(cycle.quarter_need_ids(session, period, domains, body.include_restricted))
    params = {**body.model_dump(mode="json"), "needs": needs, "unknown_need_ids": []}
    job_id = state.jobs.submit("report", params, cycle_job(
        state.sessions, matcher, state.taxonomy, body, state.settings.data_dir,
        state.settings.report_retention_days, state.settings.evaluation_weights))
    return _accepted(response, job_id, body, needs, [])


def _load(state: AppState, job_id: str, admin: bool) -> dict[str, Any]:
    job = state.jobs.get(job_id)
    if job is None or job["kind"] != "report":
        raise ApiError(404, "not_found", f"no report with id '{job_id}'")
    if (job["params"] or {}).get("include_restricted") and not admin:
        raise ApiError(403, "forbidden", "this report contains restricted data: the admin token is needed")
    return job


def _status(job: dict[str, Any]) -> dict[str, Any]:
    params, result = job["params"] or {}, job["result"] or {}
    done = job["status"] == "succeeded"
    return {
        "job_id": job["job_id"], "status": job["status"], "progress": job["progress"],
        "message": result.get("message"), "error": job["error"], "format": params.get("format", ""),
        "kind": params.get("kind", "matches"), "period": params.get("period"), "scenarios": result.get("scenarios"),
        "needs": result.get("needs", params.get("needs")), "rows": result.get("rows"),
        "matches": result.get("matches"),
        "unknown_need_ids": result.get("unknown_need_ids", params.get("unknown_need_ids", [])),
        "not_indexed_need_ids": result.get("not_indexed_need_ids", []),
        "include_restricted": bool(params.get("include_restricted")),
        "index_version": result.get("index_version"), "model": result.get("model"),
        "file_name": result.get("file_name"), "file_url": f"/v1/reports/{job['job_id']}/file" if done else None,
        "size_bytes": result.get("size_bytes"), "created_at": job["created_at"],
        "finished_at": job["finished_at"], "expires_at": result.get("expires_at"),
    }


@router.get("", response_model=list[ReportStatus], summary="Recent reports (newest first)",
            description="The last 20 reports; reports with restricted data only for the admin token. " + AUTH,
            responses=ERRORS)
def list_reports(state: StateDep, admin: AdminViewDep) -> list[dict[str, Any]]:
    jobs = state.jobs.recent(limit=20, kind="report")
    return [_status(j) for j in jobs if admin or not (j["params"] or {}).get("include_restricted")]


@router.get("/{job_id}", response_model=ReportStatus, summary="Status of a report job",
            description="`status` queued → running → succeeded | failed, `progress` 0..1; once succeeded, "
            "`file_url` downloads the file until `expires_at`. " + AUTH, responses=ERRORS)
def report_status(state: StateDep, admin: AdminViewDep, job_id: str = JobIdPath) -> dict[str, Any]:
    return _status(_load(state, job_id, admin))


@router.get("/{job_id}/file", summary="Download a report file",
            description="The file with its content type and a Chinese file name (RFC 5987 `filename*`, "
            "with an ASCII `filename` for old clients). 409 while the job is not finished or failed; "
            "410 once the file has expired (retention: SCENEMATCH_REPORT_RETENTION_DAYS). " + AUTH,
            response_class=FileResponse,
            responses={**ERRORS, 200: {"description": "The report file", "content": {
                ct.split(";")[0]: {} for ct in storage.CONTENT_TYPES.values()}},
                409: {"description": "Not finished or failed"}, 410: {"description": "Expired"}})
def report_file(state: StateDep, admin: AdminViewDep, job_id: str = JobIdPath) -> FileResponse:
    job = _load(state, job_id, admin)
    if job["status"] == "failed":
        raise ApiError(409, "report_failed", "the report failed; create a new one",
                       {"error": job["error"]})
    if job["status"] != "succeeded":
        raise ApiError(409, "report_not_ready", f"the report is {job['status']}; retry when it has succeeded",
                       {"status": job["status"], "progress": job["progress"]})
    fmt, result = job["params"]["format"], job["result"] or {}
    path = storage.report_path(state.settings.data_dir, job_id, fmt)
    if not path.is_file():
        raise ApiError(410, "report_expired", "the report file has expired and was deleted; create a new one")
    name = result.get("file_name") or f"场景匹配报告.{fmt}"
    fallback = result.get("file_name_ascii") or f"scenematch-report.{fmt}"
    return FileResponse(path, media_type=storage.CONTENT_TYPES[fmt], headers={
        "Content-Disposition": storage.content_disposition(name, fallback),
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})
