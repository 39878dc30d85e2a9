"""Feedback on recommendations (writers) and its export and precision report (admin)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field, StringConstraints

from models.db import Feedback
from service import feedback
from service.deps import SessionDep, StateDep, require_admin, require_writer
from service.errors import ApiError
from service.routes.admin import AUTH_ERRORS
from service.schemas import RecordId, StrictModel

router = APIRouter(tags=["feedback"])
admin_router = APIRouter(prefix="/v1/admin/feedback", tags=["admin"], dependencies=[Depends(require_admin)],
                         responses=AUTH_ERRORS)
Label = Literal["relevant", "irrelevant", "contacted", "deal"]
Direction = Literal["need_to_capability", "capability_to_need", "search"]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


class FeedbackIn(StrictModel):
    need_id: RecordId = Field(description="场景需求 id")
    capability_id: RecordId = Field(description="企业能力 id")
    label: Label = Field(description="relevant 相关 | irrelevant 不相关 | contacted 已对接 | deal 已签约")
    note: Annotated[str, StringConstraints(max_length=2000)] | None = None
    index_version: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="index_version of the match response the pair was shown in")
    rank_shown: int | None = Field(None, ge=1, le=10_000, description="rank the pair was shown at")
    direction: Direction | None = Field(None, description="which listing showed the pair")


class FeedbackOut(BaseModel):
    id: int
    need_id: str
    capability_id: str
    label: Label
    note: str | None
    direction: str | None
    index_version: str | None
    rank_shown: int | None
    created_at: dt.datetime


@router.post("/v1/feedback", status_code=201, response_model=FeedbackOut,
             dependencies=[Depends(require_writer)], summary="Record feedback on a recommended pair",
             responses={401: {"description": "Missing token"}, 403: {"description": "Token not allowed"},
                        404: {"description": "Unknown need or capability (named in details)"},
                        422: {"description": "Invalid field (named in details)"}})
def post_feedback(body: FeedbackIn, session: SessionDep) -> dict[str, Any]:
    missing = feedback.missing_records(session, body.need_id, body.capability_id)
    if missing:
        what = " and ".join(f"{m['field'].removesuffix('_id')} '{m['id']}'" for m in missing)
        raise ApiError(404, "not_found", f"unknown {what}", missing)
    row = Feedback(**body.model_dump())
    session.add(row)
    session.flush()
    return feedback.feedback_dict(row)


@admin_router.get("/export", summary="All feedback as CSV (UTF-8 with BOM) or JSON lines",
                  response_class=Response,
                  responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}})
def export_feedback(session: SessionDep,
                    format: Literal["csv", "jsonl"] = Query("csv", description="csv or jsonl")) -> Response:
    rows = feedback.export_rows(session)
    body = feedback.to_csv(rows) if format == "csv" else feedback.to_jsonl(rows)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Response(body, media_type=MEDIA_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="feedback-{stamp}.{format}"'})


@admin_router.get("/report", summary="How past recommendations fared: precision at the ranks shown, by domain")
def feedback_report(state: StateDep, session: SessionDep,
                    k: list[int] = Query([1, 3, 5, 10], description="ranks to report (repeatable)")
                    ) -> dict[str, Any]:
    if not k or len(k) > 20 or any(value < 1 or value > 10_000 for value in k):
        raise ApiError(422, "validation_error", "invalid k: give 1 to 20 ranks between 1 and 10000",
                       [{"field": "k", "reason": "each k must be 1..10000, at most 20 values"}])
    return feedback.precision_report(feedback.export_rows(session), state.taxonomy, sorted(set(k)))
