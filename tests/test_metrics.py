"""/metrics: per-app registry, request and job metrics, record counts, encoder timing."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from indexer.retrieval.embedding import Encoder
from service.app import create_app
from service.metrics import ServiceMetrics, TimedEncoder
from tests.conftest import CLIENT_H, make_settings


def samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_requests_are_counted_by_route_template_and_status(api):
    for record_id in ("N-1", "N-2"):
        assert api.put(f"/v1/needs/{record_id}", json={"title": "智慧水务"}, headers=CLIENT_H).status_code == 201
    assert api.get("/v1/needs/N-404").status_code == 404
    assert api.get("/no/such/path/123").status_code == 404
    found = samples(api)
    route = "/v1/needs/{record_id}"
    assert value(found, "scenematch_http_requests_total", method="PUT", route=route, status="201") == 2
    assert value(found, "scenematch_http_requests_total", method="GET", route=route, status="404") == 1
    # Unknown paths share one label so scanners cannot blow up the series count.
    assert value(found, "scenematch_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(found, "scenematch_http_request_duration_seconds_count", method="PUT", route=route,
                 status="201") == 2
    assert value(found, "scenematch_records", kind="needs") == 2
    assert value(found, "scenematch_records", kind="capabilities") == 0
    assert value(found, "scenematch_ready") == 0  # this app has no search engine


def test_each_app_has_its_own_registry(tmp_path: Path, database_url: str):
    with TestClient(create_app(make_settings(tmp_path / "a", database_url))) as first, \
            TestClient(create_app(make_settings(tmp_path / "b", f"sqlite:///{tmp_path / 'b.db'}"))) as second:
        for _ in range(3):
            first.get("/healthz")
        second.get("/healthz")
        assert value(samples(first), "scenematch_http_requests_total", method="GET", route="/healthz",
                     status="200") == 3
        assert value(samples(second), "scenematch_http_requests_total", method="GET", route="/healthz",
                     status="200") == 1


def wait_finished(client: TestClient, job_id: str) -> None:
    jobs = client.app.state.scenematch.jobs
    deadline = time.monotonic() + 60
    while jobs.get(job_id)["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "job never finished"
        time.sleep(0.05)


def test_job_durations_and_failures_by_kind(api):
    jobs = api.app.state.scenematch.jobs

    def broken(_ctx):  # noqa: ANN001, ANN202
        raise RuntimeError("disk full")

    ok_id = jobs.submit("probe", {}, lambda ctx: {"done": True})
    bad_id = jobs.submit("probe", {}, broken)
    for job_id in (ok_id, bad_id):
        wait_finished(api, job_id)
    # on_finish runs just after the row is final: give the workers their last step.
    deadline = time.monotonic() + 10
    while True:
        found = samples(api)
        if all(value(found, "scenematch_job_duration_seconds_count", kind="probe", status=status)
               for status in ("succeeded", "failed")):
            break
        assert time.monotonic() < deadline, "job metrics never appeared"
        time.sleep(0.05)
    assert value(found, "scenematch_job_duration_seconds_count", kind="probe", status="succeeded") == 1
    assert value(found, "scenematch_job_duration_seconds_count", kind="probe", status="failed") == 1
    assert value(found, "scenematch_job_failures_total", kind="probe") == 1
    assert jobs.get(bad_id)["error"] == "RuntimeError: disk full"


class CountingEncoder(Encoder):
    """A stand-in model (unit test only): fixed vectors, counts calls."""

    name, dim = "counting", 4

    def __init__(self) -> None:
        self.calls = 0

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.ones((len(texts), self.dim), np.float32) / 2

    def encode_passages(self, texts, batch_size=None, progress=None):  # noqa: ANN001, ANN201
        self.calls += 1
        return np.ones((len(texts), self.dim), np.float32) / 2


def test_timed_encoder_reports_each_call_by_role():
    metrics = ServiceMetrics()
    inner = CountingEncoder()
    timed = TimedEncoder(inner, metrics.observe_encoding)
    assert timed.encode_queries(["一", "二"]).shape == (2, 4)
    timed.encode_passages(["甲", "乙", "丙"])
    assert inner.calls == 2 and (timed.name, timed.dim) == ("counting", 4)
    text = metrics.render().decode()
    assert 'scenematch_encoder_seconds_count{role="query"} 1.0' in text
    assert 'scenematch_encoder_texts_total{role="passage"} 3.0' in text


def test_instrumenting_wraps_the_engines_cache_layer_once_and_follows_a_switch():
    class Cached:
        def __init__(self, inner: Encoder) -> None:
            self.inner, self.name, self.dim = inner, inner.name, inner.dim

    class Engine:
        snapshot = None

        def __init__(self) -> None:
            self.encoder = Cached(CountingEncoder())

    class State:
        sessions = None  # no database: the record counts are left out of the scrape

        def __init__(self, engine: Engine) -> None:
            self.extras, self.engine_ready = {"engine": engine}, True

    metrics, engine = ServiceMetrics(), Engine()
    shared_model = engine.encoder.inner
    metrics.instrument_engine(engine)
    metrics.instrument_engine(engine)
    assert isinstance(engine.encoder.inner, TimedEncoder) and engine.encoder.inner.inner is shared_model
    metrics.bind(State(engine))  # type: ignore[arg-type]
    engine.encoder = Cached(CountingEncoder())  # what adapting the model does
    metrics.observe_request("POST", "/v1/search", 200, 0.01)
    assert isinstance(engine.encoder.inner, TimedEncoder)
    engine.encoder.inner.encode_queries(["问"])
    assert 'scenematch_encoder_seconds_count{role="query"} 1.0' in metrics.render().decode()


def test_every_request_gets_an_id_echoed_and_logged_as_json(api, caplog):
    import json
    import logging

    with caplog.at_level(logging.INFO, logger="scenematch.access"):
        given = api.get("/v1/needs/N-9", headers={"X-Request-ID": "req-abc-123"})
        fresh = api.get("/healthz")
    assert given.headers["x-request-id"] == "req-abc-123"
    assert len(fresh.headers["x-request-id"]) == 32
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "scenematch.access"]
    first = next(line for line in lines if line["request_id"] == "req-abc-123")
    assert first["route"] == "/v1/needs/{record_id}" and first["status"] == 404 and first["ms"] >= 0
    assert any(line["request_id"] == fresh.headers["x-request-id"] for line in lines)
