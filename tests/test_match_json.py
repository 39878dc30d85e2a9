"""The matching routes' response bodies, built without MatchResponse, against the model itself.

GET /v1/{needs,capabilities}/{id}/matches and POST /v1/search return ready JSON
(service/match_schemas.py match_response_json) instead of letting FastAPI validate and dump the
returned dict through `response_model=MatchResponse`. These tests fail as soon as that JSON would
differ from the model's: on real responses of the demo service, on values the routes may hold
(numpy numbers, time zones, control characters), and for the database rows the page is built from (read_many) on SQLite
and PostgreSQL, deleted and hidden records included.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from indexer.retrieval.documents import key_text_of
from models import repository
from models.database import session_scope
from service.app import init_state
from service.match_schemas import MatchResponse, match_response_json
from service.routes import matching
from service.routes.records import record_out
from tests.conftest import ADMIN_H, make_settings

MODEL = TypeAdapter(MatchResponse)


def strictly_equal(a: Any, b: Any) -> bool:
    """JSON equality that also tells 1 from 1.0 and from True (a client's parser may)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strictly_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def model_json(data: Any) -> Any:
    """What FastAPI sent for `data` under response_model=MatchResponse, parsed; "invalid" for a 500."""
    try:
        return json.loads(MODEL.dump_json(MODEL.validate_python(data)))
    except ValidationError:
        return "invalid"


def fast_json(data: Any) -> Any:
    try:
        return json.loads(match_response_json(data))
    except ValidationError:
        return "invalid"


# ---- real responses ---------------------------------------------------------------------------
REQUESTS = [
    ("get", "/v1/needs/N-smart_water-001/matches", {"params": {"limit": 10}}),
    ("get", "/v1/needs/N-healthcare-001/matches", {"params": {"limit": 30, "offset": 5}, "headers": ADMIN_H}),
    ("get", "/v1/needs/N-smart_water-001/matches", {"params": {"domain": "forestry,smart_water", "limit": 50}}),
    ("get", "/v1/capabilities/C-smart_water-002/matches", {"params": {"limit": 100, "include_closed": True}}),
    ("get", "/v1/capabilities/C-smart_water-002/matches",
     {"params": {"limit": 100, "include_closed": True}, "headers": ADMIN_H}),
    ("post", "/v1/search", {"json": {"query": "山洪灾害监测预警", "target": "capabilities", "limit": 20}}),
    ("post", "/v1/search", {"json": {"query": "平台 系统 监测", "target": "needs", "limit": 100,
                                     "include_closed": True}, "headers": ADMIN_H}),
    ("post", "/v1/search", {"json": {"query": "无人机巡检", "filters": {"region": ["武汉市"]}, "limit": 30}}),
    ("post", "/v1/search", {"json": {"query": "🚁🔥 \u0007 ドローン"}}),
]


def test_real_responses_are_the_models_own_json(demo_client, monkeypatch):
    real = matching.match_response_json
    sent: list[tuple[dict[str, Any], bytes]] = []

    def spy(data: dict[str, Any]) -> bytes:
        body = real(data)
        sent.append((copy.deepcopy(data), body))
        return body

    monkeypatch.setattr(matching, "match_response_json", spy)
    for method, url, kwargs in REQUESTS:
        r = getattr(demo_client, method)(url, **kwargs)
        assert r.status_code == 200, (url, r.text)
        assert r.headers["content-type"] == "application/json" and r.headers["x-request-id"]
        body = r.json()
        assert body["items"], url
        # The model adds, drops or converts nothing in what was sent.
        assert strictly_equal(MatchResponse.model_validate(body).model_dump(mode="json"), body), url
    assert len(sent) == len(REQUESTS)
    kinds = set()
    for data, body in sent:
        assert strictly_equal(json.loads(body), model_json(data))
        kinds |= {m["kind"] for m in data["items"]}
        dates = [m["item"]["deadline"] for m in data["items"] if m["item"].get("deadline")]
        assert all(isinstance(d, dt.date) for d in dates)
    assert kinds == {"need", "capability"}


def test_the_openapi_schema_still_describes_the_body(demo_client):
    paths = demo_client.get("/openapi.json").json()["paths"]
    for path, method in [("/v1/needs/{record_id}/matches", "get"), ("/v1/capabilities/{record_id}/matches", "get"),
                         ("/v1/search", "post")]:
        schema = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/MatchResponse"}


# ---- odd values: the fast path converts them as validation does, or hands them to the model -----
def sample() -> dict[str, Any]:
    signal = {"label": "整体语义相似度", "raw": 0.81, "normalized": 0.5, "weight": 1.25, "contribution": 0.625,
              "rank": 1}
    explanation = {
        "summary": "高度匹配（0.90）。", "shared_terms": [{"term": "山洪", "weight": 1.0, "generic": False}],
        "evidence": [{"query_span": "山洪", "match_span": "预警", "similarity": 0.8123}],
        "domain_match": {"match": True, "shared": ["smart_water"], "query_domains": ["smart_water"],
                         "match_domains": ["smart_water"], "query_domain_names": ["智慧水利"],
                         "match_domain_names": ["智慧水利"]},
        "signals": {"dense": signal, "lexical": {**signal, "rank": None}},
        "cases": [{"id": "S-1", "title": "山洪预警平台", "year": 2024, "stage": "promoting", "similarity": 0.9123,
                   "outcome": {"contract_wan": 120.0, "first_purchase": True, "signed_at": "2024-05-01"},
                   "capability_id": "C-1", "via": "self"},
                  {"id": "S-2", "title": "预警", "year": None, "stage": "building", "similarity": 0.87,
                   "outcome": None, "capability_id": "C-2", "via": "organization"}],
        "score_rule": "score = …", "bias": -1.5, "logit": 2.197225,
    }
    item = {"title": "山洪预警", "description": "", "domain": "smart_water", "region": None, "tags": ["预警"],
            "budget_wan": 300.0, "deadline": dt.date(2027, 3, 31), "visibility": "public", "contact": None,
            "id": "N-1", "created_at": dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc),
            "updated_at": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "domain_predicted": True,
            "predicted_domains": [{"code": "smart_water", "name": "智慧水利", "score": 0.9}],
            "domain_name": "智慧水利"}
    return {"items": [{"rank": 1, "score": 0.9, "id": "N-1", "kind": "need", "item": item,
                       "explanation": explanation}],
            "total": 1, "limit": 10, "offset": 0, "index_version": "v1", "model": "e5", "took_ms": 3.21,
            "query": {"text": "山洪", "target": "needs"}}


def _set(path: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return change


EXPLANATION = "items.0.explanation"
ODD = {
    "as produced": lambda d: None,
    # float64 and int64 (the signals' dtypes); float32 would differ (orjson writes its shortest
    # form, pydantic the float64 it widens to), which is why explanations convert with float().
    "numpy numbers": lambda d: [_set("items.0.score", np.float64(0.9))(d), _set("total", np.int64(7))(d)],
    "other time zones": lambda d: [
        _set("items.0.item.created_at", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))))(d),
        _set("items.0.item.updated_at", dt.datetime(2026, 1, 2, 3, 4, 5, 1))(d)],
    "unicode and control characters": _set(f"{EXPLANATION}.summary", "🚁 \u0007 ドローン \u2028"),
}


@pytest.mark.parametrize("name", list(ODD))
def test_values_come_out_as_the_model_writes_them(name):
    data = sample()
    ODD[name](data)
    assert strictly_equal(fast_json(data), model_json(data)), name


# ---- the rows a page is built from --------------------------------------------------------------
NEED = {"title": "山洪灾害智能预警", "description": "融合雨量站与雷达数据", "domain": "smart_water", "region": "宜昌市",
        "publisher": "宜昌市水利和湖泊局", "publisher_type": "government", "status": "open", "visibility": "public",
        "tags": ["山洪", "预警"], "budget_wan": 300.5, "deadline": "2027-03-31", "contact": "王工 0717-6123456"}
CAP = {"title": "多源融合山洪预警平台", "description": "雨量、雷达与水位多源融合", "organization": "武汉某水利科技公司",
       "org_type": "enterprise", "domains": ["smart_water"], "region": "武汉市", "tags": ["预警"],
       "cases": "在恩施州部署", "visibility": "public", "contact": "李工 027-87654321"}


def stored_state(tmp_path: Path, database_url: str) -> Any:
    state = init_state(make_settings(tmp_path, database_url))
    with session_scope(state.sessions) as session:
        repository.upsert(session, "need", "N-pub", NEED)
        repository.upsert(session, "need", "N-secret", {**NEED, "visibility": "restricted", "deadline": None,
                                                        "budget_wan": None, "tags": []})
        repository.upsert(session, "capability", "C-pub", CAP)
        repository.upsert(session, "capability", "C-secret", {**CAP, "visibility": "restricted", "cases": None})
        predicted, _ = repository.upsert(session, "capability", "C-predicted", {**CAP, "domains": []})
        predicted.domains, predicted.domain_predicted = ["forestry"], True
        predicted.domain_scores = [{"code": "forestry", "name": "智慧林业", "score": 0.7}]
        repository.upsert(session, "capability", "C-gone", CAP)
    with session_scope(state.sessions) as session:
        assert repository.delete(session, "capability", "C-gone")
    return state


def test_read_many_reads_what_the_orm_objects_hold(tmp_path, database_url):
    state = stored_state(tmp_path, database_url)
    try:
        for kind, ids in [("need", ["N-pub", "N-secret", "N-none"]),
                          ("capability", ["C-pub", "C-secret", "C-predicted", "C-gone", "C-none"])]:
            with state.sessions() as session:
                rows = repository.read_many(session, kind, ids)
                objects = repository.get_many(session, kind, ids)
                assert rows.keys() == objects.keys() == {i for i in ids if not i.endswith(("gone", "none"))}
                for rid, row in rows.items():
                    obj = objects[rid]
                    assert row.visibility == obj.visibility and key_text_of(row) == key_text_of(obj)
                    for admin in (False, True):
                        assert record_out(kind, row, state.taxonomy, admin) == record_out(kind, obj, state.taxonomy,
                                                                                         admin)
                    out = record_out(kind, row, state.taxonomy, True)
                    assert out["created_at"].tzinfo is not None and out["contact"]
                    columns = repository.MODELS[kind].__table__.c.keys()
                    assert {c: getattr(row, c) for c in columns} == {c: getattr(obj, c) for c in columns}
                    if kind == "need" and rid == "N-pub":
                        assert out["deadline"] == dt.date(2027, 3, 31) and out["budget_wan"] == 300.5
                    if rid == "C-predicted":
                        assert out["predicted_domains"][0]["code"] == "forestry"
    finally:
        state.engine.dispose()


def test_pages_skip_deleted_and_hidden_records(tmp_path, database_url):
    """render()'s leak rules on the rows read_many gives, on both databases."""
    state = stored_state(tmp_path, database_url)
    explanation = sample()["items"][0]["explanation"]
    hits = [SimpleNamespace(id=i, score=0.5) for i in ("C-secret", "C-gone", "C-pub", "C-none", "C-predicted")]
    page = SimpleNamespace(target_kind="capability", hits=hits, total=5, took_ms=1.0,
                           snapshot=SimpleNamespace(version="v1", model="e5"))
    matcher = SimpleNamespace(needs_query_text=lambda page: False,
                              explain_hit=lambda page, hit, query_row, row: explanation)
    try:
        for admin, expected in [(False, ["C-pub", "C-predicted"]), (True, ["C-secret", "C-pub", "C-predicted"])]:
            with state.sessions() as session:
                data = matching.render(page, matcher, session, state, admin, 0, 10,
                                       {"text": "x", "target": "capabilities"})
            body = json.loads(match_response_json(data))
            assert [m["id"] for m in body["items"]] == expected
            assert [m["rank"] for m in body["items"]] == [i + 1 for i, h in enumerate(hits) if h.id in expected]
            assert all((m["item"]["contact"] is not None) == admin for m in body["items"])
            assert strictly_equal(body, model_json(data))
    finally:
        state.engine.dispose()
