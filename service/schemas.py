"""Request and response bodies of the v1 contract (see /docs for the rendered schema)."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from models.taxonomy import default_taxonomy

ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
RecordId = Annotated[str, StringConstraints(pattern=ID_PATTERN, min_length=1, max_length=64)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
RegionText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]

NeedStatus = Literal["open", "matching", "closed", "withdrawn"]
Visibility = Literal["public", "restricted"]
OrgType = Literal["enterprise", "university", "institute", "service", "other"]
PublisherType = Literal[
    "government", "soe", "chain_leader", "private", "hospital", "park", "university", "other"
]


def _check_domain(code: str) -> str:
    if not default_taxonomy().is_domain(code):
        raise ValueError(f"unknown domain code '{code}'; GET /v1/domains lists the 20 valid codes")
    return code


def _no_nul(value: Any) -> Any:
    """PostgreSQL cannot store NUL in text; refuse it on every backend so both behave alike."""
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(t, str) and "\x00" in t for t in texts):
        raise ValueError("contains a NUL character (\\u0000), which cannot be stored")
    return value


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorableText(BaseModel):
    """Mixed into request bodies only, so rows already stored are still shown as they are."""

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return _no_nul(value)


class NeedBase(StrictModel):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        description="需求名称 (≤200 chars)"
    )
    description: Annotated[str, StringConstraints(max_length=5000)] = Field(
        "", description="需求描述 (≤5,000 chars)"
    )
    domain: str | None = Field(
        None, description="One of the 20 domain codes; null: classified automatically (shown as predicted)."
    )
    region: RegionText | None = Field(None, description="市州, e.g. 武汉市")
    publisher: ShortText | None = Field(None, description="发布单位")
    publisher_type: PublisherType | None = Field(None, description="发布主体类型")
    status: NeedStatus = "open"
    visibility: Visibility = "public"
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    budget_wan: float | None = Field(None, ge=0, le=1e9, description="预算, 万元")
    deadline: dt.date | None = None
    contact: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        None, description="Shown only to admin callers."
    )

    @field_validator("domain")
    @classmethod
    def _domain_known(cls, value: str | None) -> str | None:
        return None if value is None else _check_domain(value)


class NeedIn(NeedBase, StorableText):
    """Body of PUT /v1/needs/{id}."""


class NeedBulkItem(NeedBase, StorableText):
    id: RecordId


class CapabilityBase(StrictModel):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        description="能力名称 (≤200 chars)"
    )
    description: Annotated[str, StringConstraints(max_length=5000)] = Field(
        "", description="能力描述 (≤5,000 chars)"
    )
    organization: ShortText | None = Field(None, description="单位名称")
    org_type: OrgType = "enterprise"
    domains: list[str] = Field(
        default_factory=list, max_length=20,
        description="Domain codes; empty: classified automatically (shown as predicted).",
    )
    region: RegionText | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    cases: Annotated[str, StringConstraints(max_length=5000)] | None = Field(None, description="落地案例")
    visibility: Visibility = "public"
    contact: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        None, description="Shown only to admin callers."
    )

    @field_validator("domains")
    @classmethod
    def _domains_known(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_check_domain(v) for v in value))


class CapabilityIn(CapabilityBase, StorableText):
    """Body of PUT /v1/capabilities/{id}."""


class CapabilityBulkItem(CapabilityBase, StorableText):
    id: RecordId


class DomainScore(BaseModel):
    code: str
    name: str
    score: float


class RecordMeta(BaseModel):
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    domain_predicted: bool = Field(False, description="True when the domain(s) were predicted, not given.")
    predicted_domains: list[DomainScore] | None = Field(None, description="Classifier's top-3, if predicted.")


class NeedOut(NeedBase, RecordMeta):
    model_config = ConfigDict(extra="ignore")
    id: str
    domain_name: str | None = None


class CapabilityOut(CapabilityBase, RecordMeta):
    model_config = ConfigDict(extra="ignore")
    id: str
    domain_names: list[str] = Field(default_factory=list)


class NeedPage(BaseModel):
    items: list[NeedOut]
    total: int


class CapabilityPage(BaseModel):
    items: list[CapabilityOut]
    total: int


class BulkNeeds(StrictModel):
    items: list[Any] = Field(max_length=10_000, description="Up to 10,000 needs, each with its id.")


class BulkCapabilities(StrictModel):
    items: list[Any] = Field(
        max_length=10_000, description="Up to 10,000 capabilities, each with its id."
    )


class BulkError(BaseModel):
    index: int
    id: str | None = None
    errors: list[dict[str, Any]]


class BulkResult(BaseModel):
    stored: int = Field(description="Items created or changed.")
    unchanged: int = Field(description="Items identical to what was stored (nothing to do).")
    failed: int
    errors: list[BulkError]


class DomainOut(BaseModel):
    code: str = Field(description="Stable domain code")
    name: str = Field(description="领域名称")
    category: str = Field(description="所属大类 (one of the policy's five categories)")
    category_name: str
    category_code: str
    description: str
    key_terms: list[str]


class DomainList(BaseModel):
    items: list[DomainOut]
    categories: list[dict[str, str]]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
