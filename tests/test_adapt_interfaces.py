"""Encoder adaptation's interfaces: the admin request's validation and the `scenematch adapt` command
(its defaults are the shipped ones; it says which weights judged the candidate)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from indexer.adaptation import data as adapt_data
from tests.conftest import ADMIN_H, CLIENT_H


def test_adapt_request_validation(api: TestClient) -> None:
    bad = api.post("/v1/admin/adapt", json={"learning_rate": 5, "max_pairs": 3, "colour": 1},
                   headers=ADMIN_H)
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert fields == {"learning_rate", "max_pairs", "colour"}
    assert api.post("/v1/admin/adapt", json={}, headers=CLIENT_H).status_code == 403
    assert api.post("/v1/admin/adapt", json={}, headers=ADMIN_H).status_code == 503  # no index loaded


def test_cli_defaults_are_the_shipped_defaults() -> None:
    import inspect

    from service.cli import adapt as cli_adapt
    from service.routes.adapt import AdaptRequest

    defaults = adapt_data.AdaptConfig()
    for name, param in inspect.signature(cli_adapt.adapt_command).parameters.items():
        if hasattr(defaults, name):
            assert param.default.default == getattr(defaults, name), name
    for name, value in AdaptRequest().model_dump().items():
        assert value == getattr(defaults, name), name


@pytest.mark.parametrize("ranking", [None, {"weights": {}, "bias": 0.0, "info": {"queries": 31}}])
def test_cli_says_which_weights_the_candidate_was_judged_with(ranking: dict | None, monkeypatch) -> None:
    from typer.testing import CliRunner

    from service.cli import adapt as cli_adapt
    from service.cli import app

    check = {"set": "labels_served", "queries": 40, "judged": True, "passed": True, "delta": 0.004}
    metric = {"labels_served": {"ndcg@10": 0.88, "mrr@10": 0.9}}
    result = {"activated": False, "training": {}, "ranking": ranking, "metrics": {"candidate": metric, "active": metric},
              "decision": {"stage": "served", "checks": [check], "reason": "the candidate loses on: x"}}
    monkeypatch.setattr(cli_adapt, "_run_job", lambda *args, **kwargs: result)
    out = CliRunner().invoke(app, ["adapt"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    expected = "fitted to the new model on 31 labelled training needs" if ranking else "the shipped weights"
    assert expected in out.output
