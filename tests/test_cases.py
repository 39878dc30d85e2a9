"""The case library in matching: a delivered scenario is cited in the explanation of its capability's
matches, with the visibility rules, and the `case` evidence is shown among the signals.

One writable service (SQLite, two demo domains, the real model), in file order.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.retrieval.cases import CITE_MIN_SIMILARITY
from service.app import create_app
from tests.conftest import ADMIN_H, CLIENT_H, wait_ready
from tests.test_adapt import subset_settings

NEED = "N-smart_water-001"  # 汉江流域“天空地水工”一体化监测感知体系建设
CAP = "C-smart_water-002"  # 空天地一体化水利感知数据服务
SCENARIO = {
    "title": "丹江口库区空天地一体化水文感知与数据汇聚", "domains": ["smart_water"], "region": "十堰市",
    "description": "在库区及主要支流建设卫星遥感、无人机自动机场巡飞和地面雷达测流相结合的立体感知体系，"
                   "统一汇聚感知数据并开展质量控制，支撑流域防洪预报。",
    "lead_org": "某市水利和湖泊局", "capability_ids": [CAP], "stage": "promoting", "year": 2024,
    "evaluation": {"tech_advancement": 88, "economic_benefit": 76, "social_benefit": 90, "promotion_value": 85},
    "outcome": {"contract_wan": 860.0, "first_purchase": True, "signed_at": "2024-06-18"}, "benchmark_case": True}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(create_app(subset_settings(tmp_path_factory.mktemp("cases")))) as client:
        wait_ready(client)
        yield client


def matches(client: TestClient, kind: str, record_id: str, admin: bool = False) -> dict[str, Any]:
    plural = "needs" if kind == "need" else "capabilities"
    response = client.get(f"/v1/{plural}/{record_id}/matches", params={"limit": 20},
                          headers=ADMIN_H if admin else {})
    assert response.status_code == 200, response.text
    return {m["id"]: m for m in response.json()["items"]}


def wait_until(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError("condition not met")


def cited(client: TestClient, scenario_id: str, admin: bool = False) -> dict[str, Any] | None:
    match = matches(client, "need", NEED, admin).get(CAP)
    return next((c for c in match["explanation"]["cases"] if c["id"] == scenario_id), None) if match else None


def test_a_put_scenario_is_cited_in_its_capabilitys_match(service: TestClient) -> None:
    before = matches(service, "need", NEED)[CAP]["explanation"]
    assert before["cases"] == [] and before["signals"]["case"]["raw"] == 0.0
    put = service.put("/v1/scenarios/S-case-1", json=SCENARIO, headers=CLIENT_H)
    assert put.status_code == 201 and put.json()["evaluation"]["overall"] == 84.8
    assert service.get("/v1/scenarios/S-case-1").json()["capability_ids"] == [CAP]
    case = wait_until(lambda: cited(service, "S-case-1"))
    assert case["year"] == 2024 and case["stage"] == "promoting" and case["via"] == "self"
    assert case["outcome"] == {"contract_wan": 860.0, "first_purchase": True, "signed_at": "2024-06-18"}
    assert CITE_MIN_SIMILARITY <= case["similarity"] <= 1.0
    explanation = matches(service, "need", NEED)[CAP]["explanation"]
    assert "类似场景「丹江口库区空天地一体化水文感知与数据汇聚」已由该单位落地（2024年）" in explanation["summary"]
    signal = explanation["signals"]["case"]
    assert signal["raw"] == pytest.approx(case["similarity"], abs=1e-4) and signal["contribution"] == 0.0
    # The other direction cites the same case for the capability's match with the need.
    back = matches(service, "capability", CAP)[NEED]["explanation"]
    assert [c["id"] for c in back["cases"]] == ["S-case-1"] and "已由本单位落地" in back["summary"]


def test_the_scenario_is_ranked_and_searchable(service: TestClient) -> None:
    service.put("/v1/scenarios/S-case-low", json={**SCENARIO, "title": "河道巡查", "capability_ids": [],
                                                  "evaluation": {k: 50 for k in SCENARIO["evaluation"]}},
                headers=CLIENT_H)
    ranked = [s["id"] for s in service.get("/v1/scenarios", params={"sort": "evaluation"}).json()["items"]]
    assert ranked.index("S-case-1") < ranked.index("S-case-low")
    found = wait_until(lambda: [m for m in service.post("/v1/search", json={
        "query": "丹江口库区水文感知", "target": "scenarios", "limit": 3}).json()["items"]])
    assert found[0]["id"] == "S-case-1" and found[0]["kind"] == "scenario"
    assert found[0]["item"]["evaluation"]["overall"] == 84.8 and found[0]["item"]["stage_name"] == "推广"
    bad = service.post("/v1/search", json={"query": "水文", "target": "scenarios", "filters": {"status": ["open"]}})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "filters.status"


def test_restricted_scenarios_reach_only_the_admin(service: TestClient) -> None:
    service.put("/v1/scenarios/S-case-secret", json={**SCENARIO, "title": "库区水文感知保密项目",
                                                     "visibility": "restricted"}, headers=CLIENT_H)
    assert wait_until(lambda: cited(service, "S-case-secret", admin=True))
    assert cited(service, "S-case-secret") is None
    body = service.get(f"/v1/needs/{NEED}/matches", params={"limit": 20}).text
    assert "S-case-secret" not in body and "保密项目" not in body


def test_the_organization_counts_and_undelivered_stages_do_not(service: TestClient) -> None:
    peer = service.get(f"/v1/capabilities/{CAP}").json()
    sibling = {k: peer[k] for k in ("organization", "org_type", "domains", "region")}
    service.put("/v1/capabilities/C-case-sibling", json={
        **sibling, "title": "水利遥感数据处理服务", "description": "卫星遥感影像水体与岸线解译、墒情反演和变化检测。"},
        headers=CLIENT_H)
    service.put("/v1/scenarios/S-case-matching", json={**SCENARIO, "title": "库区感知二期（对接中）",
                                                       "stage": "matching"}, headers=CLIENT_H)
    by_org = wait_until(lambda: next((c for m in [matches(service, "need", NEED).get("C-case-sibling")] if m
                                      for c in m["explanation"]["cases"] if c["id"] == "S-case-1"), None))
    assert by_org["via"] == "organization" and by_org["capability_id"] == CAP
    time.sleep(1.0)  # the matching-stage scenario has been indexed by now
    assert cited(service, "S-case-matching") is None


def test_an_untagged_scenario_is_classified(service: TestClient) -> None:
    body = {"title": "林区松材线虫病疫木无人机遥感监测", "description": "无人机航拍识别松林变色立木，定位疫木并指导清理。",
            "stage": "collecting"}
    assert service.put("/v1/scenarios/S-case-untagged", json=body, headers=CLIENT_H).json()["domains"] == []
    stored = wait_until(lambda: (s := service.get("/v1/scenarios/S-case-untagged").json())["domain_predicted"] and s)
    assert stored["domains"][0] == "forestry" and stored["domain_names"][0] == "林业"
    assert stored["predicted_domains"][0]["code"] == "forestry"
    found = service.post("/v1/search", json={"query": "松材线虫病疫木监测", "target": "scenarios",
                                             "filters": {"domain": ["forestry"]}}).json()["items"]
    assert "S-case-untagged" in [m["id"] for m in found]


def test_a_deleted_scenario_is_no_longer_cited(service: TestClient) -> None:
    assert service.delete("/v1/scenarios/S-case-1", headers=CLIENT_H).status_code == 204
    wait_until(lambda: cited(service, "S-case-1") is None)
    assert service.get("/v1/scenarios/S-case-1").status_code == 404
