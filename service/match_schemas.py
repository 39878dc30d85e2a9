"""Bodies of the matching, search and classification endpoints."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, StringConstraints, field_validator

from service.schemas import NeedStatus, OrgType, StrictModel, _check_domain


class MatchFilters(StrictModel):
    domain: list[str] = Field(default_factory=list, max_length=20, description="Domain codes (any of)")
    region: list[Annotated[str, StringConstraints(max_length=64)]] = Field(default_factory=list, max_length=50)
    org_type: list[OrgType] = Field(default_factory=list, max_length=5)
    status: list[NeedStatus] = Field(
        default_factory=list, max_length=4,
        description="Need statuses; default for needs: open and matching only")

    @field_validator("domain")
    @classmethod
    def _domains_known(cls, value: list[str]) -> list[str]:
        return [_check_domain(v) for v in value]


class SearchRequest(StrictModel):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] = Field(
        description="Free text (1–2,000 chars), e.g. 山洪灾害监测预警")
    target: Literal["capabilities", "needs", "scenarios"] = Field(
        "capabilities", description="capabilities | needs | scenarios (the third list: domain and region "
                                    "filters apply, org_type and status do not)")
    limit: int = Field(10, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1000)
    filters: MatchFilters = Field(default_factory=MatchFilters)
    include_closed: bool = Field(False, description="Include closed/withdrawn needs")


class SharedTerm(BaseModel):
    term: str = Field(description="Key term on both sides; 'a≈b' when they are synonyms")
    weight: float = Field(description="Relative weight, 1.0 for the strongest")
    generic: bool = Field(description="A generic word (系统, 平台…) shown only when nothing specific is shared")


class Evidence(BaseModel):
    query_span: str
    match_span: str
    similarity: float = Field(description="Cosine similarity of the two passages")


class Signal(BaseModel):
    label: str
    raw: float = Field(description=(
        "The signal as measured: cosine for dense and passage, BM25 divided by the query's score against "
        "itself for lexical, 0/1 for domain, cosine for case"))
    normalized: float = Field(description=(
        "The value the ranking model uses: for dense, passage and lexical the z-score among this query's "
        "candidates (how far above their mean, in standard deviations); for domain and case the raw value"))
    weight: float
    contribution: float = Field(description="weight × normalized; contributions + bias = logit")
    rank: int | None = Field(description="Rank of this candidate by this signal alone")


class CaseOutcome(BaseModel):
    contract_wan: float | None = Field(None, description="合同金额, 万元")
    first_purchase: bool | None = Field(None, description="首购首用")
    signed_at: str | None = Field(None, description="签约日期 (YYYY-MM-DD)")


class Case(BaseModel):
    id: str = Field(description="The scenario's id (GET /v1/scenarios/{id})")
    title: str
    year: int | None
    stage: str = Field(description="building, testing, promoting or retired: delivered or being delivered")
    similarity: float = Field(description="Cosine of the scenario's text with the need side of the pair")
    outcome: CaseOutcome | None
    capability_id: str = Field(description="The capability that delivered it")
    via: Literal["self", "organization"] = Field(
        description="self: the matched capability; organization: another capability of the same organization")


class Explanation(BaseModel):
    summary: str = Field(description="One Chinese sentence for a non-specialist")
    shared_terms: list[SharedTerm]
    evidence: list[Evidence]
    domain_match: dict[str, Any] = Field(description=(
        "`match` and `shared` (domain codes both sides have), `query_domains` / `match_domains` with their "
        "`*_names`, `query_domains_predicted` / `match_domains_predicted` (classified by the service, not "
        "sent by the client), and `counted_in_score`: false when a side's domains were not given by the "
        "client; the pair is then scored without the domain signal (the `untagged` model, whose weights "
        "and bias `signals` and `bias` show)"))
    signals: dict[str, Signal] = Field(description=(
        "Every ranking signal (dense, passage, lexical, domain), and `case` (the best cosine of a delivered similar scenario; its weight is 0 "
        "unless the ranking's weights give it one)"))
    cases: list[Case] = Field(description=(
        "Scenarios similar to the need side that the capability side (or its organization) delivered, most "
        "similar first (at most 3); restricted scenarios only for the admin token"))
    score_rule: str
    bias: float = Field(description="Bias of the model that scored this pair")
    logit: float


class MatchItem(BaseModel):
    rank: int
    score: float = Field(description="0..1: estimated probability that the match is relevant")
    id: str
    kind: Literal["need", "capability", "scenario"]
    item: dict[str, Any] = Field(description="The matched record's public fields")
    explanation: Explanation


class MatchResponse(BaseModel):
    items: list[MatchItem]
    total: int = Field(description="Candidates ranked (after filters)")
    limit: int
    offset: int
    index_version: str
    model: str
    took_ms: float
    query: dict[str, Any]


# ---- MatchResponse bodies without building the model -----------------------------------------
# FastAPI validates a returned dict against response_model, then serialises the model: about
# 0.5 ms a page of ten explained matches, with a trip through its thread pool. The matching
# routes build their dict with exactly the model's fields and plain Python types (render() in
# service/routes/matching.py, the explanations in indexer/ranking/explain.py), so orjson writes it as
# pydantic would ("Z" for UTC times, numpy numbers as numbers). tests/test_match_json.py holds
# real responses of both directions and free-text search to the model's own JSON, strictly
# (1 is not 1.0), so a field added to one side only fails there.
_ORJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY


def match_response_json(data: dict[str, Any]) -> bytes:
    """The body FastAPI would send for `data` under response_model=MatchResponse (see above)."""
    return orjson.dumps(data, option=_ORJSON_OPTIONS)


class ClassifyRequest(StrictModel):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
    top_k: int = Field(3, ge=1, le=20)


class DomainPrediction(BaseModel):
    code: str
    name: str
    category: str
    score: float = Field(description="0..1, the scores of all 20 domains sum to 1")


class ClassifyResponse(BaseModel):
    items: list[DomainPrediction]
    model: str
