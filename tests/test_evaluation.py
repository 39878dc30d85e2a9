"""Evaluation helpers the benchmarks report with."""
from __future__ import annotations

import numpy as np
import pytest

from indexer.ranking import evaluation as ev
from indexer.ranking.evaluation import LabelledQuery, paired_difference, per_query


def test_per_query_ndcg_scores_each_query_on_its_own():
    queries = [LabelledQuery("q1", "need", {"a": 2}), LabelledQuery("q2", "need", {"b": 1, "c": 1})]
    run = {"q1": {"a": 0.9, "x": 0.5}, "q2": {"x": 0.9, "y": 0.8}}  # q1 perfect, q2 finds nothing
    assert per_query(queries, run) == {"q1": 1.0, "q2": 0.0}
    assert per_query(queries, {"q1": {"x": 0.9, "a": 0.5}})["q1"] == pytest.approx(1 / 1.5849625, rel=1e-6)


def test_paired_difference_is_the_mean_with_an_interval_around_it():
    a = {f"q{i}": 0.5 + 0.1 * (i % 3) for i in range(60)}
    b = {f"q{i}": 0.5 for i in range(60)} | {"only_b": 1.0}
    d = paired_difference(a, b)
    assert d["queries"] == 60 and d["mean"] == pytest.approx(0.1)
    assert 0.07 < d["low"] < d["mean"] < d["high"] < 0.13
    same = paired_difference(b, b)
    assert same["mean"] == same["low"] == same["high"] == 0.0
    assert paired_difference({}, b)["queries"] == 0


def synthetic_rows(n: int = 3000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Signals in SIGNALS order where relevance follows passage and domain agreement."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, len(ev.SIGNALS)))
    x[:, ev.SIGNALS.index("domain")] = rng.integers(0, 2, n)
    logit = -6 + 6 * x[:, ev.SIGNALS.index("passage")] + 3 * x[:, ev.SIGNALS.index("domain")]
    y = (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y


def test_the_fit_adds_a_model_without_the_domain_signal_for_unknown_agreement():
    x, y = synthetic_rows()
    d = ev.SIGNALS.index("domain")
    x_unknown = x.copy()
    x_unknown[:500, d] = np.nan  # pairs with a side whose domains the client did not give
    model = ev.fit_logistic(x_unknown, y)
    assert model.untagged is not None and model.untagged.weights["domain"] == 0.0
    assert model.weights["domain"] > 1.0 and model.weights["passage"] > 1.0
    # Dense is not fitted (weight 0, docs/quality.md); the weights say what they multiply.
    assert model.weights["dense"] == 0.0 and model.info["features"] == ev.FEATURES
    # The full model is fitted on the known pairs only; the untagged one on every pair.
    known_only = ev.fit_logistic(x[500:], y[500:])
    assert model.weights == known_only.weights and model.bias == known_only.bias
    # Without the domain signal the intercept absorbs its average effect.
    assert model.untagged.bias > model.bias


def test_with_no_known_domain_agreement_the_fit_is_one_model_without_the_domain():
    x, y = synthetic_rows()
    x[:, ev.SIGNALS.index("domain")] = np.nan
    model = ev.fit_logistic(x, y)
    assert model.untagged is None and model.weights["domain"] == 0.0 and model.weights["passage"] > 1.0


def test_judged_share_counts_the_labelled_part_of_each_top_k():
    queries = [LabelledQuery("q1", "need", {"a": 2}), LabelledQuery("q2", "need", {"b": 1})]
    run = {"q1": {"a": 0.9, "x": 0.5}, "q2": {"b": 0.9, "y": 0.8, "z": 0.1, "w": 0.05}}
    judged = {"q1": {"a", "x"}, "q2": {"b"}}
    assert ev.judged_share(queries, run, judged, k=10) == pytest.approx((1.0 + 0.25) / 2)
    assert ev.judged_share(queries, run, judged, k=1) == 1.0
