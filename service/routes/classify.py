"""Domain classification of free text: POST /v1/classify."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from indexer.retrieval.classify import DomainClassifier, SnapshotClassifier
from service.deps import StateDep
from service.errors import ApiError
from service.match_schemas import ClassifyRequest, ClassifyResponse
from service.state import AppState

router = APIRouter(tags=["classification"])
ERRORS = {422: {"description": "Empty or oversized text (max 10,000 chars), or bad top_k"},
          503: {"description": "Index not loaded yet"}}


def get_classifier(state: AppState) -> DomainClassifier:
    engine = state.extras.get("engine")
    if not state.engine_ready or engine is None or engine.snapshot is None:
        raise ApiError(503, "not_ready", state.extras.get("not_ready_reason", "the index is not loaded yet"))
    holder = state.extras.get("classifier")
    if holder is None or holder.engine is not engine:
        holder = state.extras["classifier"] = SnapshotClassifier(engine, state.taxonomy)
    return holder.get()


@router.post(
    "/v1/classify", response_model=ClassifyResponse, responses=ERRORS,
    summary="Rank the 20 domains for a text (场景领域分类)",
    description=(
        "Scores are probabilities over the 20 domains (they sum to 1 over all of them), from "
        "the nearest labelled needs and capabilities, the taxonomy's descriptions and its key "
        "terms. Records stored without a domain are classified the same way when indexed."),
)
def classify_text(body: ClassifyRequest, state: StateDep) -> dict[str, Any]:
    classifier = get_classifier(state)
    ranked = classifier.predict_text(body.text, top_k=body.top_k)
    domains = state.taxonomy.domains
    return {
        "items": [{"code": code, "name": domains[code].name, "category": domains[code].category_name,
                   "score": round(score, 6)} for code, score in ranked],
        "model": classifier.encoder.name,
    }
