"""Relational data model: records, taxonomy, feedback, index versions and jobs.

One schema serves SQLite (the embedded default) and PostgreSQL; portable column
types only (JSON, not JSONB), so the same Alembic migrations run on both.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A UTC timestamp that reads back with its zone on every backend.

    SQLite keeps no zone, so its rows came back naive and the API showed times without "Z"
    (ambiguous for clients, and not RFC 3339 date-time as /openapi.json promises).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UtcDateTime(), default=utcnow, onupdate=utcnow
    )


class Category(Base):
    __tablename__ = "categories"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    order: Mapped[int] = mapped_column(Integer, default=0)


class Domain(Base):
    __tablename__ = "domains"
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(ForeignKey("categories.code"))
    order: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(Text, default="")
    key_terms: Mapped[list[Any]] = mapped_column(JSON, default=list)


class Need(TimestampMixin, Base):
    """A published scenario need (场景需求)."""

    __tablename__ = "needs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # The effective domain: given by the client, or predicted when the client sent none.
    domain: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    domain_predicted: Mapped[bool] = mapped_column(Boolean, default=False)
    domain_scores: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    publisher: Mapped[str | None] = mapped_column(String(200), nullable=True)
    publisher_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    budget_wan: Mapped[float | None] = mapped_column(Float, nullable=True)
    deadline: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    contact: Mapped[str | None] = mapped_column(String(500), nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))


class Capability(TimestampMixin, Base):
    """An enterprise, university or institute capability statement (企业能力)."""

    __tablename__ = "capabilities"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    organization: Mapped[str | None] = mapped_column(String(200), nullable=True)
    org_type: Mapped[str] = mapped_column(String(16), default="enterprise", index=True)
    domains: Mapped[list[Any]] = mapped_column(JSON, default=list)
    domain_predicted: Mapped[bool] = mapped_column(Boolean, default=False)
    domain_scores: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    cases: Mapped[str | None] = mapped_column(Text, nullable=True)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    contact: Mapped[str | None] = mapped_column(String(500), nullable=True)
    content_hash: Mapped[str] = mapped_column(String(64))


class Scenario(TimestampMixin, Base):
    """A scenario of the third list (场景清单): what was built where, by whom, how it was judged.

    The four evaluation scores and the outcome are columns of their own (not JSON), so the
    priority ranking (`sort=evaluation`) is one SQL expression on both backends; `overall` is
    not stored because its weights are configuration (service/scenarios.py).
    """

    __tablename__ = "scenarios"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    domains: Mapped[list[Any]] = mapped_column(JSON, default=list)
    domain_predicted: Mapped[bool] = mapped_column(Boolean, default=False)
    domain_scores: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    region: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    lead_org: Mapped[str | None] = mapped_column(String(200), nullable=True)
    need_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    capability_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    stage: Mapped[str] = mapped_column(String(16), default="collecting", index=True)
    year: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    tech_advancement: Mapped[float | None] = mapped_column(Float, nullable=True)
    economic_benefit: Mapped[float | None] = mapped_column(Float, nullable=True)
    social_benefit: Mapped[float | None] = mapped_column(Float, nullable=True)
    promotion_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    contract_wan: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_purchase: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    signed_at: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    benchmark_case: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    content_hash: Mapped[str] = mapped_column(String(64))


class Change(Base):
    """Append-only change log; the index's watermark is the last change it has seen.

    Every upsert and delete writes one row in the same transaction as the record,
    so incremental indexing never misses a change and deletes leave a tombstone.
    """

    __tablename__ = "changes"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # "need" | "capability" | "scenario"
    record_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(8))  # "upsert" | "delete"
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)

    __table_args__ = (Index("ix_changes_kind_record", "kind", "record_id"),)


class Feedback(Base):
    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    need_id: Mapped[str] = mapped_column(String(64), index=True)
    capability_id: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    direction: Mapped[str | None] = mapped_column(String(32), nullable=True)
    index_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    rank_shown: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class IndexVersion(Base):
    __tablename__ = "index_versions"
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # building | active | retired | failed
    model: Mapped[str] = mapped_column(String(500))
    watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    built_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The replica running the job (service/replica.py) and the key of "one at a time" jobs.
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    exclusive_key: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
