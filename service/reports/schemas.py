"""Bodies of the report endpoints: which needs, how many matches each, which file format."""
from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from service.schemas import NeedStatus, RecordId, RegionText, StrictModel, _check_domain

ReportFormat = Literal["xlsx", "csv", "jsonl", "html"]
FORMATS: tuple[str, ...] = ("xlsx", "csv", "jsonl", "html")
# The policy's publication cycle (月度发布、季度推介、年度评选) besides the plain match report.
ReportKind = Literal["matches", "monthly", "quarterly", "annual"]
PERIOD_PATTERNS = {"monthly": r"^\d{4}-(0[1-9]|1[0-2])$", "quarterly": r"^\d{4}-Q[1-4]$", "annual": r"^\d{4}$"}
PERIOD_EXAMPLES = {"monthly": "2026-03", "quarterly": "2026-Q1", "annual": "2026"}
CYCLE_FORMATS = ("xlsx", "html")  # quarterly and annual reports are tables of their own
MAX_NEED_IDS = 10_000
# One report covers at most this many needs; bigger batches should be split by domain or month.
MAX_REPORT_NEEDS = 20_000


class ReportFilters(StrictModel):
    """Needs selected by their fields; an empty list means no constraint on that field."""

    domain: list[str] = Field(default_factory=list, max_length=20, description="Domain codes (any of)")
    region: list[RegionText] = Field(default_factory=list, max_length=50, description="e.g. 武汉市")
    status: list[NeedStatus] = Field(
        default_factory=list, max_length=4,
        description="Need statuses; empty: open and matching (the needs still looking for partners)")
    since: dt.date | None = Field(None, description="Published (created) on or after this day, Beijing time")
    until: dt.date | None = Field(None, description="Published (created) on or before this day, Beijing time")

    @field_validator("domain")
    @classmethod
    def _domains_known(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_check_domain(v) for v in value))

    @model_validator(mode="after")
    def _range_ordered(self) -> "ReportFilters":
        if self.since and self.until and self.since > self.until:
            raise ValueError("filters.since must not be after filters.until")
        return self


class ReportRequest(StrictModel):
    """Body of POST /v1/reports. `kind` matches (the default): exactly one of `need_ids` and `filters`.
    monthly (月度发布): the needs published in `period` (YYYY-MM) with their matches; `filters` may narrow
    them by domain, region and status. quarterly (季度推介): the strongest capabilities per domain for the
    needs of `period` (YYYY-Qn), with their cases. annual (年度评选): the scenarios of `period` (YYYY)
    ranked by their evaluation, with outcomes and 首购首用. Quarterly and annual: xlsx or html."""

    kind: ReportKind = Field("matches", description="matches | monthly | quarterly | annual")
    period: str | None = Field(None, max_length=7, description="monthly 2026-03, quarterly 2026-Q1, annual 2026")
    per_domain: int = Field(5, ge=1, le=50, description="Quarterly: capabilities shown per domain")

    need_ids: list[RecordId] | None = Field(
        None, min_length=1, max_length=MAX_NEED_IDS,
        description="Needs by id (up to 10,000); unknown or hidden ids are listed in the answer")
    filters: ReportFilters | None = Field(None, description="Needs by domain, region, status, date")
    per_need: int = Field(5, ge=1, le=50, description="Matches per need (1–50)")
    min_score: float | None = Field(None, ge=0.0, le=1.0, description="Leave out matches scoring lower")
    format: ReportFormat = Field("xlsx", description="xlsx | csv | jsonl | html")
    include_restricted: bool = Field(
        False, description="Include restricted needs and capabilities and contacts (admin token only)")

    @model_validator(mode="after")
    def _one_selection(self) -> "ReportRequest":
        if self.kind == "matches" and (self.need_ids is None) == (self.filters is None):
            raise ValueError("give exactly one of need_ids and filters")
        return self


def request_problems(request: ReportRequest) -> list[dict[str, str]]:
    """What the request's kind does not allow, field by field (validation the model cannot place on
    a field: it depends on `kind`). Empty when the request is consistent."""
    problems = []

    def problem(field: str, reason: str) -> None:
        problems.append({"field": field, "reason": reason, "type": "value_error"})

    if request.kind == "matches":
        if request.period is not None:
            problem("period", "applies to monthly, quarterly and annual reports (kind)")
        return problems
    if request.period is None or not re.match(PERIOD_PATTERNS[request.kind], request.period):
        problem("period", f"a {request.kind} report needs a period like {PERIOD_EXAMPLES[request.kind]}")
    if request.need_ids is not None:
        problem("need_ids", f"a {request.kind} report selects its needs by period")
    if request.filters is not None and (request.filters.since or request.filters.until):
        problem("filters", "since and until come from period")
    if request.kind != "monthly" and request.format not in CYCLE_FORMATS:
        problem("format", f"a {request.kind} report is written as xlsx or html")
    return problems


class ReportAccepted(BaseModel):
    job_id: str
    status: str
    kind: ReportKind = "matches"
    period: str | None = None
    format: ReportFormat
    needs: int = Field(description="Needs selected for the report")
    unknown_need_ids: list[str] = Field(description="Requested ids that are unknown or not visible to the caller")
    status_url: str
    file_url: str


class ReportStatus(BaseModel):
    job_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(description="0..1")
    message: str | None = Field(None, description="What the job is doing (Chinese)")
    error: str | None = None
    format: str
    kind: ReportKind = "matches"
    period: str | None = None
    needs: int | None = None
    scenarios: int | None = Field(None, description="Annual reports: scenarios ranked")
    rows: int | None = Field(None, description="Rows written (one per need × match)")
    matches: int | None = None
    unknown_need_ids: list[str] = Field(default_factory=list)
    not_indexed_need_ids: list[str] = Field(default_factory=list)
    include_restricted: bool = False
    index_version: str | None = None
    model: str | None = None
    file_name: str | None = Field(None, description="Suggested download name")
    file_url: str | None = Field(None, description="Set once the report succeeded")
    size_bytes: int | None = None
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    expires_at: dt.datetime | None = Field(None, description="The file is deleted after this time")
