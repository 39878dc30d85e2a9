"""Evaluation helpers the benchmarks report with."""
from __future__ import annotations

import pytest

from indexer.evaluation import LabelledQuery, paired_difference, per_query


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
