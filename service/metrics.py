"""Prometheus metrics for one app: requests, jobs, encoder time and the served index.

Each app owns its CollectorRegistry (never the global one), so many apps can live in one
process (tests) without duplicate-metric errors. Index and record figures are read at
scrape time from the app state instead of being pushed, so they can never go stale.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from indexer.retrieval.embedding import Encoder, Progress
from models import repository
from models.database import session_scope
from service.reindex import age_seconds
from service.state import AppState

log = logging.getLogger("scenematch.metrics")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
ENCODER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
KIND_LABELS = {"need": "needs", "capability": "capabilities", "scenario": "scenarios"}


class TimedEncoder(Encoder):
    """Delegates to the real encoder and reports how long each call took (per role)."""

    def __init__(self, inner: Encoder, observe: Callable[[str, int, float], None]):
        self.inner, self.observe = inner, observe
        self.name, self.dim = inner.name, inner.dim

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.inner.encode_queries(texts)
        finally:
            self.observe("query", len(texts), time.perf_counter() - start)

    def encode_passages(self, texts: list[str], batch_size: int | None = None,
                        progress: Progress | None = None) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.inner.encode_passages(texts, batch_size, progress)
        finally:
            self.observe("passage", len(texts), time.perf_counter() - start)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("scenematch_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("scenematch_http_request_duration_seconds",
                                 "HTTP request latency by route template and status",
                                 ["method", "route", "status"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.job_duration = Histogram("scenematch_job_duration_seconds", "Background job run time",
                                      ["kind", "status"], buckets=JOB_BUCKETS, registry=self.registry)
        self.job_failures = Counter("scenematch_job_failures", "Background jobs that failed",
                                    ["kind"], registry=self.registry)
        self.encoder_seconds = Histogram("scenematch_encoder_seconds",
                                         "Time in the embedding model per call (cache misses only)",
                                         ["role"], buckets=ENCODER_BUCKETS, registry=self.registry)
        self.encoder_texts = Counter("scenematch_encoder_texts", "Texts embedded by the model",
                                     ["role"], registry=self.registry)
        self.state: AppState | None = None
        self._timed: Any = None  # the encoder whose model calls are being timed
        self._lock = threading.Lock()
        self.registry.register(StateCollector(self))

    def bind(self, state: AppState) -> None:
        self.state = state

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        engine = self.state.extras.get("engine") if self.state is not None else None
        if engine is not None and engine.encoder is not self._timed:
            self._time_encoder(engine.encoder)  # the engine switched encoders (model adaptation)

    def observe_job(self, kind: str, status: str, seconds: float) -> None:
        self.job_duration.labels(kind, status).observe(seconds)
        if status != "succeeded":
            self.job_failures.labels(kind).inc()

    def observe_encoding(self, role: str, n_texts: int, seconds: float) -> None:
        self.encoder_seconds.labels(role).observe(seconds)
        self.encoder_texts.labels(role).inc(n_texts)

    def instrument_engine(self, engine: Any) -> None:
        """Time the model behind the engine's encoder from the start (the first build included)."""
        self._time_encoder(engine.encoder)

    def _time_encoder(self, encoder: Any) -> None:
        with self._lock:
            if encoder is self._timed:
                return
            # CachedEncoder keeps the model in `inner`; the model object is shared by every app
            # of the process, so the wrapper goes on this engine's cache layer, never the model.
            inner = getattr(encoder, "inner", None)
            if inner is not None and not isinstance(inner, TimedEncoder):
                encoder.inner = TimedEncoder(inner, self.observe_encoding)
            self._timed = encoder

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Readiness, the active index and record counts, read when Prometheus scrapes."""

    def __init__(self, metrics: ServiceMetrics):
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        state = self.metrics.state
        ready = GaugeMetricFamily("scenematch_ready", "1 once an index is loaded and queries are served")
        ready.add_metric([], 1.0 if state is not None and state.engine_ready else 0.0)
        yield ready
        if state is None:
            return
        yield from self._stored_records(state)
        engine = state.extras.get("engine")
        snap = engine.snapshot if engine is not None else None
        if snap is None:
            return
        info = InfoMetricFamily("scenematch_index", "The active index version and its model")
        info.add_metric([], {"version": snap.version, "model": snap.model,
                             "mode": str(snap.manifest.get("mode", ""))})
        yield info
        age = GaugeMetricFamily("scenematch_index_age_seconds", "Seconds since the active version was built")
        age.add_metric([], age_seconds(snap.manifest, fallback=snap.loaded_at) or 0.0)
        yield age
        served = GaugeMetricFamily("scenematch_index_documents", "Records the served index answers from",
                                   labels=["kind"])
        for kind, n in snap.counts().items():
            served.add_metric([kind], n)
        yield served
        delta = GaugeMetricFamily("scenematch_index_delta_documents",
                                  "Records changed since the active version (live delta)", labels=["kind"])
        for kind, seg in snap.delta.items():
            delta.add_metric([KIND_LABELS.get(kind, kind)], len(seg))
        yield delta
        watermark = GaugeMetricFamily("scenematch_index_watermark", "Last change-log entry the index has seen")
        watermark.add_metric([], snap.watermark)
        yield watermark
        rebuilding = GaugeMetricFamily("scenematch_index_rebuilding", "1 while a full rebuild runs")
        rebuilding.add_metric([], 1.0 if engine.rebuilding else 0.0)
        yield rebuilding
        stats = getattr(engine.encoder, "stats", None)
        if callable(stats):
            lookups = CounterMetricFamily("scenematch_embedding_cache_lookups",
                                          "Embedding cache lookups by result", labels=["result"])
            counts = stats()
            lookups.add_metric(["hit"], counts.get("hits", 0))
            lookups.add_metric(["miss"], counts.get("misses", 0))
            yield lookups

    @staticmethod
    def _stored_records(state: AppState) -> Iterator[Metric]:
        stored = GaugeMetricFamily("scenematch_records", "Records stored in the database", labels=["kind"])
        try:
            with session_scope(state.sessions) as session:
                for kind, label in KIND_LABELS.items():
                    stored.add_metric([label], repository.count(session, kind))
        except Exception as exc:  # a scrape must not fail because the database is briefly away
            log.warning("record counts unavailable for /metrics: %s", type(exc).__name__)
            return
        yield stored


router = APIRouter()


@router.get("/metrics", tags=["meta"], summary="Prometheus metrics (text exposition format)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics_endpoint(request: Request) -> Response:
    metrics: ServiceMetrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
