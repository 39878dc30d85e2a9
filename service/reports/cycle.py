"""What the publication cycle's reports hold (月度发布、季度推介、年度评选).

monthly    the needs published in the month with their matches: the match report over those needs
           (job.py), titled for the month
quarterly  per domain, the capabilities that matched the quarter's needs best, with the scenarios
           they delivered (their cases, evaluation and outcome)
annual     the year's scenarios ranked by their weighted evaluation, with outcomes and 首购首用
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from indexer.ranking.matching import Matcher, NotFound
from models import repository, scenario_store
from models.database import session_scope
from models.db import Need
from models.taxonomy import Taxonomy
from service.reports.model import ORG_TYPE_NAMES
from service.reports.schemas import ReportFilters, ReportRequest
from service.reports.selection import day_start_utc
from service.scenario_schemas import STAGE_NAMES
from service.scenarios import evaluation_of, outcome_of

Progress = Callable[[float, str], None]
# A capability counts for a need when it is among that need's best matches, and strongly so from
# the score the explanations call 较为匹配.
MATCHES_PER_NEED = 10
STRONG = 0.4
TITLES = {"monthly": "场景需求月度发布报告", "quarterly": "企业能力季度推介报告", "annual": "场景年度评选报告"}


@dataclass(frozen=True)
class Period:
    kind: str
    label: str  # 2026年3月, 2026年第1季度, 2026年
    start: dt.date
    end: dt.date  # exclusive
    year: int

    @property
    def title(self) -> str:
        return f"{TITLES[self.kind]}（{self.label}）"


def parse_period(kind: str, text: str) -> Period:
    """A period as schemas.PERIOD_PATTERNS accepts it (checked before)."""
    year = int(text[:4])
    if kind == "annual":
        return Period(kind, f"{year}年", dt.date(year, 1, 1), dt.date(year + 1, 1, 1), year)
    if kind == "quarterly":
        q = int(text[-1])
        start = dt.date(year, 3 * q - 2, 1)
        end = dt.date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
        return Period(kind, f"{year}年第{q}季度", start, end, year)
    month = int(text[5:7])
    end = dt.date(year + (month == 12), 1 if month == 12 else month + 1, 1)
    return Period(kind, f"{year}年{month}月", dt.date(year, month, 1), end, year)


def monthly_filters(request: ReportRequest, period: Period) -> ReportFilters:
    """The month's needs: published (created) in it, every status but withdrawn unless `filters` say."""
    given = request.filters or ReportFilters()
    statuses = list(given.status) or ["open", "matching", "closed"]
    return given.model_copy(update={"since": period.start, "until": period.end - dt.timedelta(days=1),
                                    "status": statuses})


def _delivered(session: Session, capability_id: str, include_restricted: bool,
               weights: Mapping[str, float]) -> list[dict[str, Any]]:
    rows, _ = scenario_store.list_scenarios(session, weights=weights, capability_ids=[capability_id],
                                            stage=scenario_store.DELIVERY_STAGES,
                                            include_restricted=include_restricted, limit=50)
    return [{"id": r.id, "title": r.title, "year": r.year, "stage": STAGE_NAMES.get(r.stage, r.stage),
             "evaluation": evaluation_of(r, weights), "outcome": outcome_of(r) or {},
             "benchmark_case": r.benchmark_case} for r in rows]


# ---- quarterly ----------------------------------------------------------------------------------
@dataclass
class Standing:
    """How one capability fared against the quarter's needs."""

    capability: dict[str, Any]
    needs: int = 0  # needs it was among the best matches of
    strong: int = 0  # of which at 较为匹配 or better
    best: float = 0.0
    score_sum: float = 0.0
    best_need: str = ""
    cases: list[dict[str, Any]] = field(default_factory=list)

    def key(self) -> tuple[Any, ...]:
        return (-self.strong, -self.score_sum, -self.best, self.capability["id"])


@dataclass
class QuarterlyData:
    period: Period
    needs: int
    by_domain: dict[str, list[Standing]]  # domain code -> best first, in the taxonomy's order


def quarter_need_ids(session: Session, period: Period, domains: list[str], include_restricted: bool) -> list[str]:
    stmt = select(Need.id).where(Need.created_at >= day_start_utc(period.start),
                                 Need.created_at < day_start_utc(period.end), Need.status != "withdrawn")
    if domains:
        stmt = stmt.where(Need.domain.in_(domains))
    if not include_restricted:
        stmt = stmt.where(Need.visibility == "public")
    return list(session.scalars(stmt.order_by(Need.id)))


def quarterly(sessions: sessionmaker[Session], matcher: Matcher, taxonomy: Taxonomy, period: Period,
              domains: list[str], per_domain: int, include_restricted: bool, weights: Mapping[str, float],
              progress: Progress | None = None) -> QuarterlyData:
    with session_scope(sessions) as session:
        need_ids = quarter_need_ids(session, period, domains, include_restricted)
        titles = {n.id: n.title for n in repository.get_many(session, "need", need_ids).values()}
    standings: dict[str, Standing] = {}
    for done, need_id in enumerate(need_ids, start=1):
        try:
            page = matcher.match_record("need", need_id, filters=None, include_restricted=include_restricted,
                                        limit=MATCHES_PER_NEED, offset=0)
        except NotFound:
            continue  # stored but not indexed yet
        for hit in page.hits:
            s = standings.setdefault(hit.id, Standing({"id": hit.id}))
            s.needs += 1
            s.strong += hit.score >= STRONG
            s.score_sum += hit.score
            if hit.score > s.best:
                s.best, s.best_need = hit.score, titles.get(need_id, need_id)
        if progress is not None and done % 20 == 0:
            progress(0.8 * done / max(1, len(need_ids)), f"已匹配 {done}/{len(need_ids)} 个需求")
    by_domain: dict[str, list[Standing]] = {}
    with session_scope(sessions) as session:
        caps = repository.get_many(session, "capability", sorted(standings))
        for cap_id, standing in standings.items():
            row = caps.get(cap_id)
            if row is None or (row.visibility != "public" and not include_restricted):
                continue
            standing.capability = {
                "id": row.id, "title": row.title, "organization": row.organization,
                "org_type": ORG_TYPE_NAMES.get(row.org_type, row.org_type), "region": row.region,
                "domain_names": [n for n in (taxonomy.name(c) for c in row.domains or []) if n]}
            for code in row.domains or []:
                if not domains or code in domains:
                    by_domain.setdefault(code, []).append(standing)
        order = {code: i for i, code in enumerate(taxonomy.domains)}
        by_domain = {code: sorted(v, key=Standing.key)[:per_domain]
                     for code, v in sorted(by_domain.items(), key=lambda kv: order.get(kv[0], len(order)))}
        for shown in {id(s): s for v in by_domain.values() for s in v}.values():
            shown.cases = _delivered(session, shown.capability["id"], include_restricted, weights)
    return QuarterlyData(period, len(need_ids), by_domain)


# ---- annual -------------------------------------------------------------------------------------
@dataclass
class AnnualData:
    period: Period
    rows: list[dict[str, Any]]  # ranked by overall evaluation, unevaluated last


def annual(sessions: sessionmaker[Session], taxonomy: Taxonomy, period: Period, domains: list[str],
           include_restricted: bool, weights: Mapping[str, float]) -> AnnualData:
    rows: list[dict[str, Any]] = []
    with session_scope(sessions) as session:
        for code in domains or [None]:
            found, _ = scenario_store.list_scenarios(session, weights=weights, domain=code, year=period.year,
                                                     include_restricted=include_restricted, limit=100_000)
            rows.extend(_annual_row(r, taxonomy, weights) for r in found if r.id not in {x["id"] for x in rows})
        caps = repository.get_many(session, "capability", sorted({c for r in rows for c in r["capability_ids"]}))
        for row in rows:
            # A restricted capability is not named to a caller who may not see it, not even by its id.
            row["capability_ids"] = [c for c in row["capability_ids"]
                                     if c not in caps or include_restricted or caps[c].visibility == "public"]
            row["capabilities"] = [{"id": c, "title": caps[c].title, "organization": caps[c].organization}
                                   for c in row["capability_ids"] if c in caps]
    rows.sort(key=lambda r: (r["overall"] is None, -(r["overall"] or 0), r["id"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return AnnualData(period, rows)


def _annual_row(row: Any, taxonomy: Taxonomy, weights: Mapping[str, float]) -> dict[str, Any]:
    evaluation = evaluation_of(row, weights) or {}
    outcome = outcome_of(row) or {}
    return {"id": row.id, "title": row.title, "domains": list(row.domains or []),
            "domain_names": [n for n in (taxonomy.name(c) for c in row.domains or []) if n],
            "region": row.region, "lead_org": row.lead_org, "stage": STAGE_NAMES.get(row.stage, row.stage),
            "evaluation": evaluation, "overall": evaluation.get("overall"),
            "contract_wan": outcome.get("contract_wan"), "first_purchase": outcome.get("first_purchase"),
            "signed_at": outcome.get("signed_at"), "benchmark_case": bool(row.benchmark_case),
            "capability_ids": list(row.capability_ids or [])}

