"""赛马: the ranking's weights refitted on outcomes, judged on held-out needs, activated only when they
win, versioned and reversible. One writable service (SQLite, two demo domains, the real model)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.adaptation import outcomes
from models import repository
from models.database import make_engine, make_session_factory, migrate, session_scope
from service.app import create_app
from tests.conftest import ADMIN_H, CLIENT_H, wait_ready
from tests.test_adapt import engine_of, subset_settings, wait_job


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with TestClient(create_app(subset_settings(tmp_path_factory.mktemp("outcomes")))) as client:
        wait_ready(client)
        yield client


def need_ids(client: TestClient) -> list[str]:
    return sorted(engine_of(client).snapshot.base["need"].ids)


def ranked(client: TestClient, need_id: str) -> list[dict[str, Any]]:
    return client.get(f"/v1/needs/{need_id}/matches", params={"limit": 30}, headers=ADMIN_H).json()["items"]


def give_feedback(client: TestClient, pairs: list[tuple[str, str, str]]) -> None:
    for need_id, cap_id, label in pairs:
        r = client.post("/v1/feedback", json={"need_id": need_id, "capability_id": cap_id, "label": label},
                        headers=CLIENT_H)
        assert r.status_code == 201, r.text


def learn(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/admin/ranking/learn", json=body, headers=ADMIN_H)
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["job_id"])
    assert job["status"] == "succeeded", job["error"]
    return job["result"]


def test_too_few_outcomes_are_refused_with_the_reason(service: TestClient) -> None:
    first = need_ids(service)[0]
    give_feedback(service, [(first, ranked(service, first)[0]["id"], "deal")])
    result = learn(service)
    assert result["decision"] == "refused" and result["version"] is None
    assert "not enough outcomes" in result["reason"] and result["labels"]["feedback_pairs"] == 1


def test_outcomes_the_served_ranking_already_gets_right_are_refused(service: TestClient) -> None:
    """Deals exactly where the served weights put them: refitting cannot rank the held-out needs better."""
    give_feedback(service, [(n, ranked(service, n)[0]["id"], "deal") for n in need_ids(service)])
    result = learn(service)
    assert result["decision"] == "refused", result["reason"]
    assert result["metrics"]["served"] == 1.0 and result["metrics"]["candidate"] <= 1.0
    assert "do not help" in result["reason"] and result["counts"]["held_out_needs"] >= 5
    assert service.get("/v1/admin/ranking", headers=ADMIN_H).json()["active_version"] is None


def test_deals_the_served_ranking_misses_are_learned_and_can_be_rolled_back(service: TestClient) -> None:
    """Deals on the lexically strongest candidate ranked 6th-30th, 'irrelevant' on the served top 3: a
    consistent preference the served weights miss, on the held-out needs as on the others."""
    before_weights = service.get("/v1/admin/ranking", headers=ADMIN_H).json()["served_weights"]
    pairs = []
    for need in need_ids(service):
        items = ranked(service, need)
        tail = items[5:30]
        if not tail:
            continue
        best = max(tail, key=lambda m: (m["explanation"]["signals"]["lexical"]["normalized"], m["id"]))
        pairs += [(need, m["id"], "irrelevant") for m in items[:3]] + [(need, best["id"], "deal")]
    give_feedback(service, pairs)
    result = learn(service)
    assert result["decision"] == "activated", result["reason"]
    assert result["metrics"]["candidate"] > result["metrics"]["served"] and result["metrics"]["gain"]["mean"] > 0
    status = service.get("/v1/admin/ranking", headers=ADMIN_H).json()
    assert status["active_version"] == result["version"]
    assert service.get("/v1/admin/index", headers=ADMIN_H).json()["ranking"]["source"] == "learned"
    assert status["served_weights"] == result["candidate_weights"] != before_weights
    learned, shipped = status["served_weights"]["weights"], before_weights["weights"]
    # The deals were candidates lexical ranks high: lexical gains on the other signals.
    assert learned["lexical"] > learned["passage"]
    assert learned["lexical"] - learned["passage"] > shipped["lexical"] - shipped["passage"]
    # The served matches now use the learned weights (their bias is in every explanation).
    need = need_ids(service)[0]
    assert ranked(service, need)[0]["explanation"]["bias"] in (
        result["candidate_weights"]["bias"], (result["candidate_weights"].get("untagged") or {}).get("bias"))

    undone = service.post("/v1/admin/ranking/rollback", headers=ADMIN_H)
    assert undone.status_code == 200 and undone.json() == {"rolled_back": result["version"], "active_version": None}
    assert service.get("/v1/admin/ranking", headers=ADMIN_H).json()["served_weights"] == before_weights
    again = service.post("/v1/admin/ranking/rollback", headers=ADMIN_H)
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_roll_back"


def test_learning_needs_the_admin_token_and_valid_options(service: TestClient) -> None:
    assert service.post("/v1/admin/ranking/learn", json={}, headers=CLIENT_H).status_code == 403
    bad = service.post("/v1/admin/ranking/learn", json={"holdout_fraction": 1.5}, headers=ADMIN_H)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "holdout_fraction"


def test_delivered_scenarios_count_as_deals(database_url: str, tmp_path) -> None:  # noqa: ANN001
    db = make_engine(database_url)
    migrate(db)
    sessions = make_session_factory(db)
    base = {"title": "场景", "domains": [], "capability_ids": ["C-1", "C-2"], "need_id": "N-1"}
    with session_scope(sessions) as session:
        repository.upsert(session, "scenario", "S-built", {**base, "stage": "building"})
        repository.upsert(session, "scenario", "S-matching", {**base, "need_id": "N-2", "stage": "matching"})
        repository.upsert(session, "scenario", "S-signed", {**base, "need_id": "N-3", "stage": "published",
                                                            "signed_at": "2025-01-02"})
        repository.upsert(session, "scenario", "S-open", {**base, "need_id": "N-4", "stage": "collecting"})
        repository.upsert(session, "scenario", "S-no-need", {**base, "need_id": None, "stage": "promoting"})
    with session_scope(sessions) as session:
        found = outcomes.scenario_outcomes(session)
    assert found == {("N-1", "C-1"): 3, ("N-1", "C-2"): 3, ("N-2", "C-1"): 2, ("N-2", "C-2"): 2,
                     ("N-3", "C-1"): 3, ("N-3", "C-2"): 3}
    db.dispose()
