"""Records API on both databases: CRUD, listing, bulk upsert and bad input."""
from __future__ import annotations

import json

import pytest

from tests.conftest import ADMIN_H, CLIENT_H

NEED = {
    "title": "长江宜昌段山洪灾害智能预警", "description": "需要融合雨量站与雷达数据, 提前2小时预警山洪。",
    "domain": "smart_water", "region": "宜昌市", "publisher": "宜昌市水利和湖泊局",
    "publisher_type": "government", "status": "open", "visibility": "public",
    "tags": ["山洪", "预警"], "budget_wan": 300, "deadline": "2027-03-31", "contact": "王工 0717-6123456",
}
CAP = {
    "title": "多源融合山洪预警平台", "description": "雨量、雷达与水位多源融合, 分钟级预警。",
    "organization": "武汉某水利科技公司", "org_type": "enterprise", "domains": ["smart_water"],
    "region": "武汉市", "tags": ["预警"], "cases": "在恩施州部署", "visibility": "public",
    "contact": "李工 027-87654321",
}


def test_put_get_delete_need(api):
    r = api.put("/v1/needs/N-1", json=NEED, headers=CLIENT_H)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"] == "N-1" and body["domain"] == "smart_water" and body["domain_name"] == "智慧水利"
    assert body["contact"] is None  # a client token is not the admin token
    assert api.put("/v1/needs/N-1", json={**NEED, "title": "改"}, headers=CLIENT_H).status_code == 200
    got = api.get("/v1/needs/N-1").json()
    assert got["title"] == "改" and got["contact"] is None and got["created_at"] and got["updated_at"]
    assert api.get("/v1/needs/N-1", headers=ADMIN_H).json()["contact"] == NEED["contact"]
    assert api.delete("/v1/needs/N-1", headers=CLIENT_H).status_code == 204
    r = api.get("/v1/needs/N-1")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert api.delete("/v1/needs/N-1", headers=CLIENT_H).status_code == 404


def test_capability_roundtrip_and_restricted_hidden(api):
    assert api.put("/v1/capabilities/C-1", json=CAP, headers=ADMIN_H).status_code == 201
    secret = {**CAP, "visibility": "restricted", "title": "保密能力"}
    assert api.put("/v1/capabilities/C-2", json=secret, headers=ADMIN_H).status_code == 201
    assert api.get("/v1/capabilities/C-2").status_code == 404
    assert api.get("/v1/capabilities/C-2", headers=ADMIN_H).json()["title"] == "保密能力"
    listed = api.get("/v1/capabilities").json()
    assert [c["id"] for c in listed["items"]] == ["C-1"] and listed["total"] == 1
    assert api.get("/v1/capabilities", headers=ADMIN_H).json()["total"] == 2


def test_writes_need_a_token(api):
    r = api.put("/v1/needs/N-1", json=NEED)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = api.put("/v1/needs/N-1", json=NEED, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403
    assert api.delete("/v1/needs/N-1").status_code == 401
    assert api.post("/v1/needs/bulk", json={"items": []}).status_code == 401


def test_list_filters_and_pagination(api):
    items = []
    for i in range(25):
        items.append({**NEED, "id": f"N-{i:02d}", "region": "武汉市" if i % 2 else "宜昌市",
                      "domain": "smart_water" if i < 20 else "forestry",
                      "status": "closed" if i == 3 else "open"})
    assert api.post("/v1/needs/bulk", json={"items": items}, headers=CLIENT_H).json()["stored"] == 25
    page = api.get("/v1/needs", params={"limit": 10, "offset": 20}).json()
    assert page["total"] == 25 and [n["id"] for n in page["items"]] == [f"N-{i}" for i in range(20, 25)]
    assert api.get("/v1/needs", params={"domain": "forestry"}).json()["total"] == 5
    assert api.get("/v1/needs", params={"region": "武汉市", "domain": "smart_water"}).json()["total"] == 10
    assert api.get("/v1/needs", params={"status": "closed"}).json()["total"] == 1
    caps = [{**CAP, "id": f"C-{i}", "domains": ["smart_water", "forestry"] if i % 3 == 0 else ["smart_city"]}
            for i in range(9)]
    api.post("/v1/capabilities/bulk", json={"items": caps}, headers=CLIENT_H)
    assert api.get("/v1/capabilities", params={"domain": "forestry"}).json()["total"] == 3
    assert api.get("/v1/capabilities", params={"domain": "smart_city"}).json()["total"] == 6


def test_bulk_reports_invalid_items_and_stores_valid(api):
    items = [
        {**NEED, "id": "ok-1"},
        {**NEED, "id": "bad id!"},
        {**NEED, "id": "ok-2", "domain": "no_such_domain"},
        {**NEED, "id": "ok-3", "title": "x" * 201},
        {**NEED, "id": "ok-4"},
        {**NEED, "id": "ok-1"},
        "not an object",
    ]
    r = api.post("/v1/needs/bulk", json={"items": items}, headers=CLIENT_H)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored"] == 2 and body["failed"] == 5
    by_index = {e["index"]: e for e in body["errors"]}
    assert set(by_index) == {1, 2, 3, 5, 6}
    assert by_index[1]["errors"][0]["field"] == "id"
    assert by_index[2]["errors"][0]["field"] == "domain" and "unknown domain" in by_index[2]["errors"][0]["reason"]
    assert by_index[3]["errors"][0]["field"] == "title"
    assert "duplicate" in by_index[5]["errors"][0]["reason"]
    again = api.post("/v1/needs/bulk", json={"items": items[:1]}, headers=CLIENT_H).json()
    assert again["stored"] == 0 and again["unchanged"] == 1


BAD_NEEDS = [
    ("missing title", {k: v for k, v in NEED.items() if k != "title"}, "title"),
    ("extra field", {**NEED, "colour": "red"}, "colour"),
    ("wrong type", {**NEED, "budget_wan": "lots"}, "budget_wan"),
    ("tags not a list", {**NEED, "tags": "山洪"}, "tags"),
    ("unknown domain", {**NEED, "domain": "space_mining"}, "domain"),
    ("oversized description", {**NEED, "description": "字" * 5001}, "description"),
    ("oversized title", {**NEED, "title": "字" * 201}, "title"),
    ("bad status", {**NEED, "status": "pending"}, "status"),
    ("bad date", {**NEED, "deadline": "2027-13-45"}, "deadline"),
    ("negative budget", {**NEED, "budget_wan": -1}, "budget_wan"),
    ("empty title", {**NEED, "title": "   "}, "title"),
]


@pytest.mark.parametrize("case,body,field", BAD_NEEDS, ids=[c[0] for c in BAD_NEEDS])
def test_bad_need_bodies_get_422_naming_the_field(api, case, body, field):
    api.put("/v1/needs/keep", json=NEED, headers=CLIENT_H)
    r = api.put("/v1/needs/keep", json=body, headers=CLIENT_H)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    assert field in {d["field"] for d in err["details"]}, err
    assert "Traceback" not in r.text
    assert api.get("/v1/needs/keep").json()["title"] == NEED["title"]  # nothing stored was changed


@pytest.mark.parametrize("raw,status", [
    (b"{not json", 400),
    (b'{"title": "\xff\xfe bad utf-8"}', 400),
    (b"[1, 2, 3]", 422),
    (b"", 422),
])
def test_malformed_bodies(api, raw, status):
    r = api.put("/v1/needs/N-x", content=raw, headers={**CLIENT_H, "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"code", "message", "details"}
    assert api.get("/v1/needs/N-x").status_code == 404


@pytest.mark.parametrize("bad_id", ["has space", "x" * 65, "中文id", "a/b", "..%2F..%2Fetc"])
def test_invalid_ids(api, bad_id):
    r = api.put(f"/v1/needs/{bad_id}", json=NEED, headers=CLIENT_H)
    assert r.status_code in (404, 422), r.text
    assert "error" in r.json()


@pytest.mark.parametrize("plural,body", [("needs", NEED), ("capabilities", CAP),
                                         ("needs", {"items": [{**NEED, "id": "N-1"}]})])
def test_put_to_the_reserved_id_bulk_is_refused(api, plural, body):
    """PUT /v1/needs/bulk is a bulk call with the wrong method, never a record called "bulk"."""
    r = api.put(f"/v1/{plural}/bulk", json=body, headers=CLIENT_H)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "validation_error" and set(err) == {"code", "message", "details"}
    assert [(d["field"], d["type"]) for d in err["details"]] == [("id", "reserved")], err
    assert f"POST /v1/{plural}/bulk" in err["details"][0]["reason"]
    assert api.get(f"/v1/{plural}/bulk").status_code == 404
    assert api.get(f"/v1/{plural}").json()["total"] == 0
    # Without a token it is still 401 first; a real bulk call and other ids are untouched.
    assert api.put(f"/v1/{plural}/bulk", json=body).status_code == 401
    assert api.put(f"/v1/{plural}/bulky", json=NEED if plural == "needs" else CAP,
                   headers=CLIENT_H).status_code == 201


def test_bulk_item_with_the_reserved_id_is_reported_and_the_rest_stored(api):
    r = api.post("/v1/needs/bulk", json={"items": [{**NEED, "id": "bulk"}, {**NEED, "id": "N-ok"}]},
                 headers=CLIENT_H)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stored"] == 1 and body["failed"] == 1
    assert body["errors"][0]["index"] == 0 and body["errors"][0]["errors"][0]["type"] == "reserved"
    assert api.get("/v1/needs/N-ok").status_code == 200 and api.get("/v1/needs/bulk").status_code == 404


def test_bulk_over_limit_is_refused(api):
    r = api.post("/v1/needs/bulk", json={"items": [{"id": "x"}] * 10_001}, headers=CLIENT_H)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "items"


def test_body_too_large_is_413(api):
    big = json.dumps({**NEED, "description": "字" * 6_000_000})
    r = api.put("/v1/needs/N-big", content=big.encode(), headers={**CLIENT_H, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_bad_list_filters(api):
    assert api.get("/v1/needs", params={"domain": "nope"}).status_code == 422
    assert api.get("/v1/needs", params={"limit": 0}).status_code == 422
    assert api.get("/v1/needs", params={"limit": 10_000}).status_code == 422
    assert api.get("/v1/needs", params={"status": "x' OR 1=1 --"}).status_code == 422
    r = api.get("/v1/needs", params={"region": "x' OR '1'='1"})
    assert r.status_code == 200 and r.json()["total"] == 0


def test_domains_and_health(api):
    r = api.get("/v1/domains").json()
    assert len(r["items"]) == 20
    assert {d["category"] for d in r["items"]} == {"新领域新赛道", "产业转型升级", "行业领域深度应用", "创新社会治理", "民生"}
    assert all(d["description"] and d["name"] for d in r["items"])
    assert api.get("/healthz").status_code == 200
    assert api.get("/v1/nope").json()["error"]["code"] == "not_found"


def test_a_client_token_cannot_tell_from_put_whether_a_restricted_id_exists(api):
    secret = {**CAP, "visibility": "restricted", "title": "保密能力"}
    assert api.put("/v1/capabilities/C-secret", json=secret, headers=ADMIN_H).status_code == 201
    stored = api.get("/v1/capabilities/C-secret", headers=ADMIN_H).json()
    # Unchanged content (nothing rewritten) and new content: both look like a new id to the client.
    for body in (secret, {**secret, "title": "探测"}):
        taken = api.put("/v1/capabilities/C-secret", json=body, headers=CLIENT_H)
        fresh = api.put(f"/v1/capabilities/C-new-{len(body['title'])}", json=body, headers=CLIENT_H)
        assert taken.status_code == fresh.status_code == 201, (taken.text, fresh.text)
        assert taken.json()["created_at"] > stored["created_at"] and set(taken.json()) == set(fresh.json())
    # The stored record is what the client sent, its history untouched; the admin still gets 200.
    assert api.get("/v1/capabilities/C-secret", headers=ADMIN_H).json()["created_at"] == stored["created_at"]
    assert api.put("/v1/capabilities/C-secret", json=secret, headers=ADMIN_H).status_code == 200
    # A record the client may see keeps answering 200 when replaced.
    assert api.put("/v1/capabilities/C-open", json=CAP, headers=CLIENT_H).status_code == 201
    assert api.put("/v1/capabilities/C-open", json={**CAP, "title": "改"}, headers=CLIENT_H).status_code == 200
