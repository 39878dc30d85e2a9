"""Which needs a report covers, in report order (grouped by domain), read as ids only."""
from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.ranking.matching import OPEN_STATUSES
from models.db import Need
from models.taxonomy import Taxonomy
from service.reports.model import BEIJING, STATUS_NAMES, UNCLASSIFIED
from service.reports.schemas import MAX_REPORT_NEEDS, ReportFilters


class SelectionTooLarge(ValueError):
    def __init__(self, limit: int):
        super().__init__(f"the filters select more than {limit} needs")
        self.limit = limit


@dataclass
class Selection:
    need_ids: list[str]  # grouped by domain in the policy's order; unclassified last
    domains: list[tuple[str, str, int]]  # (code, name, needs) in the same order
    description: str
    unknown_ids: list[str] = field(default_factory=list)


def day_start_utc(day: dt.date) -> dt.datetime:
    """Operators think in Beijing days; records are stamped in UTC."""
    return dt.datetime.combine(day, dt.time(0), BEIJING).astimezone(dt.timezone.utc)


def _ordered(pairs: list[tuple[str, str | None]], taxonomy: Taxonomy) -> Selection:
    order = {code: i for i, code in enumerate(taxonomy.domains)}
    last = len(order)

    def key(item: tuple[int, tuple[str, str | None]]) -> tuple[int, str, int]:
        position, (_, domain) = item
        if not domain:
            return (last + 1, "", position)
        return (order.get(domain, last), domain, position)

    ranked = [pair for _, pair in sorted(enumerate(pairs), key=key)]
    counts = Counter(domain or UNCLASSIFIED[0] for _, domain in ranked)
    domains = [(code, taxonomy.name(code) or (code or UNCLASSIFIED[1]), n) for code, n in counts.items()]
    return Selection([need_id for need_id, _ in ranked], domains, "")


def by_ids(session: Session, taxonomy: Taxonomy, need_ids: Sequence[str],
           include_restricted: bool) -> Selection:
    """The requested needs in request order within each domain; unknown and hidden ids listed apart."""
    wanted = list(dict.fromkeys(need_ids))
    found: dict[str, str | None] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        stmt = select(Need.id, Need.domain).where(Need.id.in_(chunk))
        if not include_restricted:
            # A hidden need is reported as unknown: its existence is itself restricted.
            stmt = stmt.where(Need.visibility == "public")
        found.update({row.id: row.domain for row in session.execute(stmt)})
    selection = _ordered([(i, found[i]) for i in wanted if i in found], taxonomy)
    selection.unknown_ids = [i for i in wanted if i not in found]
    selection.description = f"指定需求 {len(wanted)} 个"
    return selection


def by_filters(session: Session, taxonomy: Taxonomy, filters: ReportFilters,
               include_restricted: bool, limit: int = MAX_REPORT_NEEDS) -> Selection:
    statuses = list(filters.status) or list(OPEN_STATUSES)
    stmt = select(Need.id, Need.domain).where(Need.status.in_(statuses))
    if filters.domain:
        stmt = stmt.where(Need.domain.in_(filters.domain))
    if filters.region:
        stmt = stmt.where(Need.region.in_(filters.region))
    if filters.since:
        stmt = stmt.where(Need.created_at >= day_start_utc(filters.since))
    if filters.until:
        stmt = stmt.where(Need.created_at < day_start_utc(filters.until + dt.timedelta(days=1)))
    if not include_restricted:
        stmt = stmt.where(Need.visibility == "public")
    rows = session.execute(stmt.order_by(Need.id).limit(limit + 1)).all()
    if len(rows) > limit:
        raise SelectionTooLarge(limit)
    selection = _ordered([(row.id, row.domain) for row in rows], taxonomy)
    selection.description = describe_filters(filters, taxonomy)
    return selection


def describe_filters(filters: ReportFilters, taxonomy: Taxonomy) -> str:
    parts = []
    if filters.domain:
        parts.append("领域：" + "、".join(taxonomy.name(c) or c for c in filters.domain))
    if filters.region:
        parts.append("地区：" + "、".join(filters.region))
    statuses = list(filters.status) or list(OPEN_STATUSES)
    parts.append("状态：" + "、".join(STATUS_NAMES.get(s, s) for s in statuses))
    if filters.since or filters.until:
        since = filters.since.isoformat() if filters.since else "不限"
        until = filters.until.isoformat() if filters.until else "不限"
        parts.append(f"发布日期：{since} 至 {until}")
    return "；".join(parts)


class EmptySelection(ValueError):
    def __init__(self, unknown_ids: list[str]):
        super().__init__("the selection contains no need")
        self.unknown_ids = unknown_ids


def select_needs(session: Session, taxonomy: Taxonomy, need_ids: Sequence[str] | None,
                 filters: ReportFilters | None, include_restricted: bool) -> Selection:
    """The report's needs by ids or by filters; raises EmptySelection or SelectionTooLarge."""
    if need_ids is not None:
        selection = by_ids(session, taxonomy, need_ids, include_restricted)
    else:
        selection = by_filters(session, taxonomy, filters or ReportFilters(), include_restricted)
    if not selection.need_ids:
        raise EmptySelection(selection.unknown_ids)
    return selection
