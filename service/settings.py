"""All configuration in one typed object, read from SCENEMATCH_* environment variables."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.repository import EVALUATION_FIELDS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCENEMATCH_", env_file=None, extra="ignore")

    data_dir: Path = Field(Path("./var"), description="Embedded database, index versions, reports.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "scenematch",
        description="Built embedding model and downloaded wheels, shared by all data dirs.",
    )
    admin_token: str | None = Field(None, description="Bearer token for /v1/admin/*; unset disables admin.")
    client_tokens: str = Field("", description="Comma-separated bearer tokens allowed to write.")
    load_demo: bool = Field(True, description="Load the demo corpus into an empty database on start.")
    demo_corpus: Literal["realistic", "classic"] = Field(
        "realistic", description="Which seed corpus the demo loads: realistic (records shaped like published "
                                 "ones, data/seed/realistic) or classic (the first demo, data/seed/demo).")
    demo_per_domain: int = Field(
        12, ge=0, description="The demo loads at most this many needs and capabilities per domain (plus the "
                              "capabilities its scenarios cite), so the first start is quick; 0: all of them.")
    embedding_model: str | None = Field(
        None, description="sentence-transformers model name or folder; default offline e5-small."
    )
    encoder_backend: str = Field(
        "onnx-int8", description="What runs the encoder: onnx-int8 (ONNX Runtime, weights quantized to int8 per "
                                 "channel, exported offline from the same model folder: about 4x a plain encode, "
                                 "ranking within 0.002 nDCG@10 of fp32), onnx (the same graph in fp32) or torch "
                                 "(sentence-transformers). Without onnxruntime, or for a hub model name, torch serves "
                                 "(docs/benchmarks.md \"Encoder\").")
    max_body_bytes: int = Field(16 * 1024 * 1024, description="Largest accepted request body.")
    refresh_interval_s: float = Field(1.0, description="How often stored changes are indexed.")
    build_index_on_start: bool = Field(True, description="Build the first index if none exists.")
    cors_origins: str = Field("", description="Comma-separated allowed CORS origins; empty = CORS off.")
    report_retention_days: int = Field(30, ge=1, description="Days a generated report file is kept.")
    log_level: str = Field("INFO")
    vector_backend: Literal["faiss", "milvus"] = Field(
        "faiss", description="Where index versions keep their vectors: in-process FAISS or Milvus.")
    milvus_uri: str | None = Field(
        None, description="Milvus: a file path (milvus-lite, embedded) or http(s)://host:19530 (a server or "
                          "cluster); default DATA_DIR/milvus.db.")
    milvus_token: str | None = Field(None, description="Milvus token (user:password or an API key).")
    auto_adapt: bool = Field(True, description="Adapt the encoder on its own when the corpus has grown (a guarded, "
                                               "reversible job, as POST /v1/admin/adapt {}).")
    auto_adapt_growth: float = Field(0.2, gt=0, description="Records added since the last adaptation, as a "
                                                            "fraction of its record count, that start the next.")
    auto_adapt_days: float = Field(30.0, gt=0, description="Or this many days since the last one, if records "
                                                           "changed (the monthly publication cycle).")
    auto_adapt_min_records: int = Field(200, ge=1, description="No automatic adaptation below this many records.")
    auto_adapt_quiet_s: float = Field(1800.0, ge=0, description="Seconds without writes before one starts (not "
                                                                "half-way through a bulk load).")
    auto_adapt_check_s: float = Field(600.0, gt=0, description="How often the condition is checked.")
    evaluation_weights: dict[str, float] = Field(
        default_factory=lambda: dict.fromkeys(EVALUATION_FIELDS, 0.25),
        description="Weights of a scenario's overall evaluation (JSON object of the four dimensions "
                    "技术先进性、经济效益、社会效益、推广价值); default equal. Only their ratio matters.")

    @field_validator("admin_token", "embedding_model", "database_url", "milvus_uri", "milvus_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("encoder_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from indexer.retrieval.embedding import BACKENDS

        if value not in BACKENDS:
            raise ValueError(f"one of {', '.join(BACKENDS)}")
        return value

    @field_validator("evaluation_weights")
    @classmethod
    def _four_weights(cls, value: dict[str, float]) -> dict[str, float]:
        if set(value) != set(EVALUATION_FIELDS):
            raise ValueError(f"give exactly the four dimensions: {', '.join(EVALUATION_FIELDS)}")
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("weights must be >= 0 and not all 0")
        return {name: float(value[name]) for name in EVALUATION_FIELDS}

    @cached_property
    def resolved_milvus_uri(self) -> str:
        return self.milvus_uri or str((self.data_dir / "milvus.db").resolve())

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'scenematch.db').resolve()}"

    @cached_property
    def client_token_list(self) -> list[str]:
        return [t.strip() for t in self.client_tokens.split(",") if t.strip()]

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
