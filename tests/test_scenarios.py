"""The third list's records API: scenarios stored, validated field by field, listed in priority order."""
from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import ADMIN_H, CLIENT_H

EVAL = {"tech_advancement": 80, "economic_benefit": 70, "social_benefit": 90, "promotion_value": 60}


def scenario(**overrides: Any) -> dict[str, Any]:
    body = {"title": "山区小型水库雨水情测报与大坝安全监测", "description": "为47座小型水库补齐雨水情测报设施。",
            "domains": ["smart_water"], "region": "恩施州", "lead_org": "某县水利局",
            "capability_ids": ["C-1"], "stage": "promoting", "year": 2025, "evaluation": EVAL,
            "outcome": {"contract_wan": 312.6, "first_purchase": True, "signed_at": "2025-04-18"},
            "benchmark_case": True}
    body.update(overrides)
    return body


def test_put_get_delete_round_trip_with_overall(api: TestClient) -> None:
    created = api.put("/v1/scenarios/S-1", json=scenario(), headers=CLIENT_H)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["evaluation"]["overall"] == 75.0  # equal weights by default
    assert body["outcome"] == {"contract_wan": 312.6, "first_purchase": True, "signed_at": "2025-04-18"}
    assert body["stage_name"] == "推广" and body["domain_names"] == ["智慧水利"]
    got = api.get("/v1/scenarios/S-1").json()
    assert got["capability_ids"] == ["C-1"] and got["benchmark_case"] is True
    assert api.put("/v1/scenarios/S-1", json=scenario(), headers=CLIENT_H).status_code == 200
    assert api.delete("/v1/scenarios/S-1", headers=CLIENT_H).status_code == 204
    assert api.get("/v1/scenarios/S-1").status_code == 404


def test_a_score_of_150_names_its_field(api: TestClient) -> None:
    bad = api.put("/v1/scenarios/S-2", json=scenario(evaluation={**EVAL, "tech_advancement": 150}), headers=CLIENT_H)
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert [d["field"] for d in error["details"]] == ["evaluation.tech_advancement"]
    assert "evaluation.tech_advancement" in error["message"]
    partial = api.put("/v1/scenarios/S-2", json=scenario(evaluation={"tech_advancement": 80}), headers=CLIENT_H)
    assert {d["field"] for d in partial.json()["error"]["details"]} == {
        "evaluation.economic_benefit", "evaluation.social_benefit", "evaluation.promotion_value"}
    for field, value in (("stage", "done"), ("year", 1800), ("domains", ["nope"]), ("capability_ids", ["a b"])):
        response = api.put("/v1/scenarios/S-2", json=scenario(**{field: value}), headers=CLIENT_H)
        assert response.status_code == 422 and response.json()["error"]["details"][0]["field"].startswith(field)
    assert api.put("/v1/scenarios/S-2", json=scenario()).status_code == 401
    assert api.put("/v1/scenarios/bulk", json=scenario(), headers=CLIENT_H).status_code == 422


def test_list_sorts_by_evaluation_and_filters(api: TestClient) -> None:
    api.put("/v1/scenarios/low", json=scenario(evaluation={k: 40 for k in EVAL}, year=2024, stage="building"),
            headers=CLIENT_H)
    api.put("/v1/scenarios/high", json=scenario(evaluation={k: 95 for k in EVAL}), headers=CLIENT_H)
    api.put("/v1/scenarios/none", json=scenario(evaluation=None, domains=["forestry"], capability_ids=["C-2"]),
            headers=CLIENT_H)
    api.put("/v1/scenarios/hidden", json=scenario(evaluation={k: 99 for k in EVAL}, visibility="restricted"),
            headers=CLIENT_H)
    ids = [s["id"] for s in api.get("/v1/scenarios").json()["items"]]
    assert ids == ["high", "low", "none"]  # the restricted one is not listed, unevaluated last
    assert [s["id"] for s in api.get("/v1/scenarios", headers=ADMIN_H).json()["items"]][0] == "hidden"
    assert api.get("/v1/scenarios/hidden").status_code == 404
    assert api.get("/v1/scenarios", params={"stage": "building"}).json()["total"] == 1
    assert api.get("/v1/scenarios", params={"year": 2024}).json()["items"][0]["id"] == "low"
    assert [s["id"] for s in api.get("/v1/scenarios", params={"domain": "forestry"}).json()["items"]] == ["none"]
    assert [s["id"] for s in api.get("/v1/scenarios", params={"capability_id": "C-2"}).json()["items"]] == ["none"]
    updated = api.get("/v1/scenarios", params={"sort": "updated"}).json()["items"]
    assert updated[0]["id"] == "none"
    for params in ({"stage": "done"}, {"domain": "nope"}, {"sort": "best"}, {"year": 3000}):
        bad = api.get("/v1/scenarios", params=params)
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == next(iter(params))


def test_weights_come_from_settings(tmp_path, database_url: str) -> None:  # noqa: ANN001
    from service.app import create_app
    from tests.conftest import make_settings

    weights = {"tech_advancement": 3, "economic_benefit": 1, "social_benefit": 0, "promotion_value": 0}
    with TestClient(create_app(make_settings(tmp_path, database_url, evaluation_weights=weights))) as client:
        body = client.put("/v1/scenarios/S-1", json=scenario(), headers=CLIENT_H).json()
    assert body["evaluation"]["overall"] == 77.5  # (3·80 + 1·70) / 4


def test_bulk_reports_each_invalid_item(api: TestClient) -> None:
    items = [{"id": "B-1", **scenario()}, {"id": "B-2", **scenario(evaluation={**EVAL, "social_benefit": -1})},
             "nope", {"id": "B-1", **scenario()}]
    result = api.post("/v1/scenarios/bulk", json={"items": items}, headers=CLIENT_H).json()
    assert result["stored"] == 1 and result["failed"] == 3
    assert result["errors"][0]["errors"][0]["field"] == "evaluation.social_benefit"
    assert [e["index"] for e in result["errors"]] == [1, 2, 3]
    again = api.post("/v1/scenarios/bulk", json={"items": items[:1]}, headers=CLIENT_H).json()
    assert again["unchanged"] == 1


def test_a_client_token_cannot_tell_from_put_whether_a_restricted_scenario_exists(api: TestClient) -> None:
    secret = scenario(visibility="restricted")
    assert api.put("/v1/scenarios/S-secret", json=secret, headers=ADMIN_H).status_code == 201
    assert api.put("/v1/scenarios/S-secret", json=secret, headers=CLIENT_H).status_code == 201
    assert api.put("/v1/scenarios/S-secret", json=secret, headers=ADMIN_H).status_code == 200
