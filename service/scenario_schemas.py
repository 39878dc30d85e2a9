"""Bodies of the third list's endpoints: scenarios (场景清单) with evaluation and outcome."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from service.schemas import (
    RecordId,
    RecordMeta,
    RegionText,
    ShortText,
    StorableText,
    StrictModel,
    Tag,
    Visibility,
    _check_domain,
)

Stage = Literal["collecting", "published", "matching", "building", "testing", "promoting", "retired"]
STAGE_NAMES = {"collecting": "征集", "published": "发布", "matching": "对接", "building": "建设",
               "testing": "测试", "promoting": "推广", "retired": "退出"}
Score = Annotated[float, Field(ge=0, le=100)]


class Evaluation(StrictModel):
    """The policy's four dimensions, each 0–100 (all four, as an expert panel scores them)."""

    tech_advancement: Score = Field(description="技术先进性 0–100")
    economic_benefit: Score = Field(description="经济效益 0–100")
    social_benefit: Score = Field(description="社会效益 0–100")
    promotion_value: Score = Field(description="推广价值 0–100")


class EvaluationOut(Evaluation):
    overall: float = Field(description="Weighted mean of the four (SCENEMATCH_EVALUATION_WEIGHTS; default equal)")


class Outcome(StrictModel):
    contract_wan: float | None = Field(None, ge=0, le=1e9, description="合同金额, 万元")
    first_purchase: bool | None = Field(None, description="首购首用: bought first by a public body")
    signed_at: dt.date | None = Field(None, description="签约日期")


class ScenarioBase(StrictModel):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        description="场景名称 (≤200 chars)")
    description: Annotated[str, StringConstraints(max_length=5000)] = Field("", description="场景描述 (≤5,000 chars)")
    domains: list[str] = Field(default_factory=list, max_length=20,
                               description="Domain codes; empty: classified automatically (shown as predicted).")
    region: RegionText | None = None
    lead_org: ShortText | None = Field(None, description="场景方 (the body that opens the scenario)")
    need_id: RecordId | None = Field(None, description="The need it grew from, if any")
    capability_ids: list[RecordId] = Field(
        default_factory=list, max_length=50,
        description="Capabilities that delivered or are delivering it (may name records not stored yet)")
    stage: Stage = Field("collecting", description="征集 collecting → 发布 published → 对接 matching → 建设 building "
                                                   "→ 测试 testing → 推广 promoting → 退出 retired")
    year: int | None = Field(None, ge=2000, le=2100, description="The year the scenario was opened")
    evaluation: Evaluation | None = Field(None, description="技术先进性、经济效益、社会效益、推广价值, each 0–100")
    outcome: Outcome | None = None
    benchmark_case: bool = Field(False, description="标杆案例")
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    visibility: Visibility = "public"

    @field_validator("domains")
    @classmethod
    def _domains_known(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_check_domain(v) for v in value))

    @field_validator("capability_ids")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class ScenarioIn(ScenarioBase, StorableText):
    """Body of PUT /v1/scenarios/{id}."""


class ScenarioBulkItem(ScenarioBase, StorableText):
    id: RecordId


class ScenarioOut(ScenarioBase, RecordMeta):
    model_config = ConfigDict(extra="ignore")
    id: str
    domain_names: list[str] = Field(default_factory=list)
    stage_name: str = Field(description="The stage in Chinese (征集…退出)")
    evaluation: EvaluationOut | None = None  # type: ignore[assignment]


class ScenarioPage(BaseModel):
    items: list[ScenarioOut]
    total: int


class BulkScenarios(StrictModel):
    items: list[Any] = Field(max_length=10_000, description="Up to 10,000 scenarios, each with its id.")
