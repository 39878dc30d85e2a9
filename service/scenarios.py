"""How a stored scenario is shown: nested evaluation (with its weighted overall) and outcome."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.repository import EVALUATION_FIELDS, OUTCOME_FIELDS
from models.scenario_store import overall_of
from models.taxonomy import Taxonomy
from service.scenario_schemas import STAGE_NAMES

PLAIN_FIELDS = ("title", "description", "domains", "region", "lead_org", "need_id", "capability_ids", "stage",
                "year", "benchmark_case", "tags", "visibility")


def evaluation_of(row: Any, weights: Mapping[str, float]) -> dict[str, Any] | None:
    scores = {name: getattr(row, name) for name in EVALUATION_FIELDS}
    overall = overall_of(scores, weights)
    return None if overall is None else {**scores, "overall": overall}


def outcome_of(row: Any) -> dict[str, Any] | None:
    values = {name: getattr(row, name) for name in OUTCOME_FIELDS}
    return values if any(v is not None for v in values.values()) else None


def scenario_out(row: Any, taxonomy: Taxonomy, weights: Mapping[str, float]) -> dict[str, Any]:
    """A stored scenario as the API shows it (scenarios have no contact field to hide)."""
    data: dict[str, Any] = {f: getattr(row, f) for f in PLAIN_FIELDS}
    data.update(id=row.id, created_at=row.created_at, updated_at=row.updated_at,
                domain_predicted=bool(row.domain_predicted), stage_name=STAGE_NAMES.get(row.stage, row.stage),
                domain_names=[n for n in (taxonomy.name(c) for c in row.domains or []) if n],
                evaluation=evaluation_of(row, weights), outcome=outcome_of(row))
    if row.domain_predicted and row.domain_scores:
        data["predicted_domains"] = row.domain_scores
    return data
