"""Adaptation without labels (the normal deployment): own pairs, label-free probes, `POST /v1/admin/adapt {}`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexer.adaptation import data as adapt_data, evaluate as adapt_eval
from models.database import make_engine, make_session_factory, migrate
from service.app import create_app
from tests.conftest import ADMIN_H, wait_ready
from tests.test_adapt import assert_consistent, load_subset, run_adapt, subset_settings


def test_without_labels_the_guard_judges_on_both_label_free_probes() -> None:
    def sets(pairs: float, general: float) -> dict[str, dict[str, Any]]:
        return {"pairs": {"queries": 30, "ndcg@10": pairs}, "general": {"queries": 300, "ndcg@10": general}}

    tolerances = {"general": 0.02}
    ok = adapt_eval.guard(sets(0.96, 0.975), sets(0.95, 0.99), 0.005, tolerances)
    assert ok["accepted"] and ok["judged_by"] == "label-free probes"  # general within its tolerance
    worse = adapt_eval.guard(sets(0.96, 0.96), sets(0.95, 0.99), 0.005, tolerances)
    assert not worse["accepted"] and "general" in worse["reason"]
    assert not adapt_eval.guard(sets(0.94, 0.99), sets(0.95, 0.99), 0.005, tolerances)["accepted"]
    only_pairs = {"pairs": {"queries": 30, "ndcg@10": 0.99}}
    assert not adapt_eval.guard(only_pairs, {"pairs": {"queries": 30, "ndcg@10": 0.9}}, 0.005)["accepted"]
    # Where labels are judged, they decide with the probes: a loss on labels is refused.
    labelled = {**sets(0.96, 0.99), "labels": {"queries": 10, "ndcg@10": 0.6}}
    before = {**sets(0.95, 0.99), "labels": {"queries": 10, "ndcg@10": 0.7}}
    assert not adapt_eval.guard(labelled, before, 0.005, tolerances)["accepted"]


def test_a_deployment_without_labels_trains_on_its_own_leads_and_holds_records_out(database_url: str) -> None:
    from indexer.retrieval.text import get_tokenizer

    db = make_engine(database_url)
    migrate(db)
    sessions = make_session_factory(db)
    load_subset(sessions, rename=True)  # ids no label knows: a deployment's own records
    data = adapt_data.collect(sessions, get_tokenizer(), adapt_data.AdaptConfig())
    by_name = {s.name: s for s in data.eval_sets}
    assert set(by_name) == {"pairs", "general"} and data.counts["label_pairs"] == 0
    assert len(by_name["general"]) == adapt_data.GENERAL_RECORDS
    assert not set(by_name["general"].query_ids) & {i.split(":", 1)[1] for i in by_name["pairs"].query_ids}
    # Title → the opening of the body, one pair per record not held out.
    assert data.pairs and all(len(p["positive"]) <= adapt_data.LEAD_CHARS for p in data.pairs)
    assert len(data.pairs) == data.counts["record_pairs"] == data.counts["needs"] + data.counts["capabilities"] \
        - len(by_name["pairs"])
    assert not {p["anchor"] for p in data.pairs} & set(by_name["pairs"].queries)
    db.dispose()


@pytest.mark.slow
def test_an_empty_request_adapts_a_deployment_without_labels(tmp_path: Path) -> None:
    """`POST /v1/admin/adapt {}` on records no label knows: trained on their own leads, judged by
    the label-free probes; the job ends with a decision either way, the service serving throughout."""
    with TestClient(create_app(subset_settings(tmp_path, rename=True))) as client:
        wait_ready(client)
        job = run_adapt(client, {})
        assert job["status"] == "succeeded", job["error"]
        result = job["result"]
        assert result["pairs"]["label_pairs"] == 0 and result["pairs"]["record_pairs"] > 0
        checks = {c["set"]: c for c in result["decision"]["checks"]}
        assert checks["pairs"]["judged"] and checks["general"]["judged"] and "labels" not in checks
        assert result["decision"]["judged_by"] == "label-free probes"
        assert result["activated"] == result["decision"]["accepted"]
        if result["activated"]:
            assert assert_consistent(client)["active_version"] == result["version"]
        status = client.get("/v1/admin/index", headers=ADMIN_H).json()
        assert status["auto_adapt"]["state"]["baseline_records"] == sum(
            status["stored_counts"][k] for k in ("needs", "capabilities"))
        assert status["auto_adapt"]["enabled"] is False  # the tests' settings switch it off
