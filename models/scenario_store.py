"""Queries of the third list: scenarios by domain, stage, year or delivering capability, in the
policy's priority order (the weighted evaluation) or by last update."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, func, literal, or_, select
from sqlalchemy.orm import Session

from models.db import Scenario
from models.repository import EVALUATION_FIELDS, json_list_has

STAGES = ("collecting", "published", "matching", "building", "testing", "promoting", "retired")
# A capability "delivered or is delivering" a scenario from the building stage on: before that the
# scenario is still being collected, published or matched, and naming a capability is an intention.
DELIVERY_STAGES = ("building", "testing", "promoting", "retired")
Sort = Literal["evaluation", "updated"]


def overall_of(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """The weighted mean of the four scores (0–100, one decimal); None until all four are given."""
    values = [scores.get(name) for name in EVALUATION_FIELDS]
    if any(v is None for v in values):
        return None
    total = sum(weights[name] for name in EVALUATION_FIELDS)
    return round(sum(weights[n] * float(v) for n, v in zip(EVALUATION_FIELDS, values)) / total, 1)


def overall_expression(weights: Mapping[str, float]) -> ColumnElement[Any]:
    """overall_of as SQL: NULL when a score is missing (any NULL term makes the sum NULL)."""
    total = sum(weights[name] for name in EVALUATION_FIELDS)
    terms = [getattr(Scenario, name) * literal(weights[name] / total) for name in EVALUATION_FIELDS]
    expr = terms[0]
    for term in terms[1:]:
        expr = expr + term
    return expr


def list_scenarios(session: Session, *, weights: Mapping[str, float], domain: str | None = None,
                   stage: Sequence[str] = (), year: int | None = None, capability_ids: Sequence[str] = (),
                   include_restricted: bool = False, sort: Sort = "evaluation", limit: int = 20,
                   offset: int = 0) -> tuple[list[Scenario], int]:
    """A page of scenarios and how many match. `sort=evaluation`: best overall first, scenarios not
    yet evaluated last; `updated`: most recently changed first. Ties by id, so pages are stable."""
    stmt: Select[Any] = select(Scenario)
    if domain:
        stmt = stmt.where(json_list_has(Scenario.domains, domain))
    if stage:
        stmt = stmt.where(Scenario.stage.in_(list(stage)))
    if year is not None:
        stmt = stmt.where(Scenario.year == year)
    if capability_ids:
        stmt = stmt.where(or_(*[json_list_has(Scenario.capability_ids, c) for c in capability_ids]))
    if not include_restricted:
        stmt = stmt.where(Scenario.visibility == "public")
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    if sort == "evaluation":
        overall = overall_expression(weights)
        # NULLS LAST spelled portably: SQLite sorts NULL first in DESC, PostgreSQL last.
        order = [overall.is_(None), overall.desc(), Scenario.id]
    else:
        order = [Scenario.updated_at.desc(), Scenario.id]
    rows = session.scalars(stmt.order_by(*order).limit(limit).offset(offset)).all()
    return list(rows), int(total)
