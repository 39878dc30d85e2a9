"""Matching and search on the demo corpus with the real model (read-only shared service)."""
from __future__ import annotations

import json
import math

import pytest

from tests.conftest import ADMIN_H


def _labels() -> dict[str, dict[str, int]]:
    from service.demo import demo_labels

    out: dict[str, dict[str, int]] = {}
    for row in demo_labels():
        out.setdefault(row["need_id"], {})[row["capability_id"]] = row["grade"]
    return out


def test_need_to_capabilities_finds_labelled_answers(demo_client):
    labels = _labels()
    hits_at_5 = 0
    needs = sorted(labels)[:20]
    for need_id in needs:
        r = demo_client.get(f"/v1/needs/{need_id}/matches", params={"limit": 5}, headers=ADMIN_H)
        assert r.status_code == 200, r.text
        top = [m["id"] for m in r.json()["items"]]
        hits_at_5 += any(labels[need_id].get(c) == 2 for c in top)
    # A grade-2 capability in the top 5 for most labelled needs: the ranking works at all.
    assert hits_at_5 >= 14, hits_at_5


def test_match_shape_and_explanation_consistency(demo_client):
    body = demo_client.get("/v1/needs/N-smart_water-001/matches", params={"limit": 10}).json()
    assert body["index_version"] and body["model"] and body["total"] >= len(body["items"]) > 0
    scores = [m["score"] for m in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    for position, match in enumerate(body["items"], start=1):
        assert match["rank"] == position and match["kind"] == "capability"
        exp = match["explanation"]
        assert exp["summary"].endswith("。") and any("\u4e00" <= ch <= "\u9fff" for ch in exp["summary"])
        logit = exp["bias"] + math.fsum(s["contribution"] for s in exp["signals"].values())
        assert logit == pytest.approx(exp["logit"], abs=1e-4)
        assert 1 / (1 + math.exp(-logit)) == pytest.approx(match["score"], abs=1e-4)
        for signal in exp["signals"].values():
            assert signal["contribution"] == pytest.approx(signal["weight"] * signal["normalized"], abs=1e-4)
            assert signal["rank"] >= 1
        assert exp["domain_match"]["match"] == ("smart_water" in match["item"]["domains"])
        for ev in exp["evidence"]:
            assert ev["query_span"] and ev["match_span"] and -1 <= ev["similarity"] <= 1
        assert match["item"]["contact"] is None


def test_capability_to_needs_hides_closed_unless_asked(demo_client):
    cap = "C-smart_water-002"
    open_only = demo_client.get(f"/v1/capabilities/{cap}/matches", params={"limit": 100}).json()
    statuses = {m["item"]["status"] for m in open_only["items"]}
    assert statuses <= {"open", "matching"}
    everything = demo_client.get(f"/v1/capabilities/{cap}/matches",
                                 params={"limit": 100, "include_closed": True}).json()
    assert everything["total"] > open_only["total"]
    closed = demo_client.get(f"/v1/capabilities/{cap}/matches", params={"status": "closed"}).json()
    assert closed["items"] and {m["item"]["status"] for m in closed["items"]} == {"closed"}


def test_filters(demo_client):
    r = demo_client.get("/v1/needs/N-smart_water-001/matches",
                        params={"domain": "forestry", "org_type": "university", "limit": 50}).json()
    assert r["items"]
    for m in r["items"]:
        assert "forestry" in m["item"]["domains"] and m["item"]["org_type"] == "university"
    r = demo_client.post("/v1/search", json={"query": "无人机巡检", "target": "capabilities",
                                             "filters": {"region": ["武汉市"]}, "limit": 30}).json()
    assert r["items"] and {m["item"]["region"] for m in r["items"]} == {"武汉市"}
    r = demo_client.get("/v1/needs/N-smart_water-001/matches", params={"domain": "forestry,smart_water",
                                                                       "limit": 100}).json()
    assert {d for m in r["items"] for d in m["item"]["domains"]} & {"forestry", "smart_water"}


def test_pagination_is_a_slice_of_the_same_ranking(demo_client):
    full = demo_client.get("/v1/needs/N-healthcare-001/matches", params={"limit": 30}).json()
    page = demo_client.get("/v1/needs/N-healthcare-001/matches", params={"limit": 10, "offset": 10}).json()
    assert [m["id"] for m in page["items"]] == [m["id"] for m in full["items"][10:20]]
    assert [m["rank"] for m in page["items"]] == list(range(11, 21))


def test_restricted_records_and_contacts_never_leak(demo_client):
    from service.demo import demo_records

    needs, caps = demo_records()
    restricted = {r["id"] for r in needs + caps if r["visibility"] == "restricted"}
    assert restricted
    public_need = next(n["id"] for n in needs if n["visibility"] == "public")
    for url, kw in [(f"/v1/needs/{public_need}/matches", {"params": {"limit": 100}}),
                    ("/v1/capabilities/C-smart_water-002/matches", {"params": {"limit": 100, "include_closed": True}})]:
        text = demo_client.get(url, **kw).text
        assert not any(f'"{rid}"' in text for rid in restricted)
        assert all(m["item"]["contact"] is None for m in json.loads(text)["items"])
    for target in ("needs", "capabilities"):
        body = demo_client.post("/v1/search", json={"query": "平台 系统 监测", "target": target, "limit": 100,
                                                    "include_closed": True}).json()
        assert all(m["id"] not in restricted and m["item"]["contact"] is None for m in body["items"])
    secret_need = next(n["id"] for n in needs if n["visibility"] == "restricted")
    assert demo_client.get(f"/v1/needs/{secret_need}/matches").status_code == 404
    admin = demo_client.get(f"/v1/needs/{secret_need}/matches", headers=ADMIN_H)
    assert admin.status_code == 200
    admin_search = demo_client.post("/v1/search", headers=ADMIN_H, json={
        "query": "平台 系统 监测", "target": "needs", "limit": 100, "include_closed": True}).json()
    assert any(m["item"]["contact"] for m in admin_search["items"])


@pytest.mark.parametrize("method,url,kwargs,status", [
    ("get", "/v1/needs/NO-SUCH/matches", {}, 404),
    ("get", "/v1/capabilities/NO-SUCH/matches", {}, 404),
    ("get", "/v1/needs/N-smart_water-001/matches", {"params": {"domain": "atlantis"}}, 422),
    ("get", "/v1/needs/N-smart_water-001/matches", {"params": {"org_type": "alien"}}, 422),
    ("get", "/v1/needs/N-smart_water-001/matches", {"params": {"status": "deleted"}}, 422),
    ("get", "/v1/needs/N-smart_water-001/matches", {"params": {"limit": 0}}, 422),
    ("get", "/v1/needs/N-smart_water-001/matches", {"params": {"limit": 101}}, 422),
    ("post", "/v1/search", {"json": {"query": ""}}, 422),
    ("post", "/v1/search", {"json": {"query": "   "}}, 422),
    ("post", "/v1/search", {"json": {"query": "字" * 2001}}, 422),
    ("post", "/v1/search", {"json": {"query": "水", "target": "people"}}, 422),
    ("post", "/v1/search", {"json": {"query": "水", "filters": {"domain": ["x' OR 1=1"]}}}, 422),
    ("post", "/v1/search", {"json": {"query": "水", "filters": {"colour": ["red"]}}}, 422),
])
def test_bad_matching_input(demo_client, method, url, kwargs, status):
    r = getattr(demo_client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] and "Traceback" not in r.text


def test_search_both_targets_and_odd_text(demo_client):
    for target in ("capabilities", "needs"):
        r = demo_client.post("/v1/search", json={"query": "山洪灾害监测预警", "target": target})
        assert r.status_code == 200 and r.json()["items"]
        assert r.json()["items"][0]["kind"] == ("capability" if target == "capabilities" else "need")
    for text in ["🚁🔥", "SELECT * FROM needs; --", "\u0000\u0007控制字符", "Drone 巡检 ドローン"]:
        r = demo_client.post("/v1/search", json={"query": text})
        assert r.status_code == 200, (text, r.text)
