"""Unit tests for indexer.retrieval.lexical.BM25Index.

Reference implementation: bm25s with method="lucene" (idf = ln(1 + (N-df+0.5)/(df+0.5)),
tf part = tf / (tf + k1·(1-b+b·dl/avgdl)), repeated query tokens counted each time).
"""

from __future__ import annotations

import math

import bm25s
import numpy as np
import pytest

from indexer.retrieval.lexical import BM25Index, lucene_idf

TINY = [["a", "b"], ["a", "c", "c"], ["d"]]


def random_corpus(seed: int, n_docs: int = 60, vocab: int = 40) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    # Zipf-ish draw so df varies from 1 to most documents.
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    return [list(rng.choice(words, size=int(rng.integers(1, 25)), p=p)) for _ in range(n_docs)]


def test_hand_computed_example():
    idx = BM25Index.build(TINY, k1=1.2, b=0.75)
    # N = 3, avgdl = (2 + 3 + 1) / 3 = 2.
    # "c": df = 1 → idf = ln(1 + 2.5/1.5) = ln(8/3) = 0.980829
    # doc 1: tf = 2, dl = 3 → norm = 1.2·(0.25 + 0.75·3/2) = 1.65 → 0.980829·2/3.65 = 0.537440
    s = idx.scores(["c"])
    np.testing.assert_allclose(s, [0.0, 0.537440, 0.0], atol=1e-6)
    # "a": df = 2 → idf = ln(1 + 1.5/2.5) = ln(1.6) = 0.470004
    # doc 0: tf = 1, dl = 2 → norm = 1.2 → 0.470004/2.2 = 0.213638
    # doc 1: tf = 1, dl = 3 → norm = 1.65 → 0.470004/2.65 = 0.177360
    s = idx.scores(["a", "c", "zzz"])  # unknown query terms are ignored
    np.testing.assert_allclose(s, [0.213638, 0.177360 + 0.537440, 0.0], atol=1e-6)
    assert math.isclose(idx.idf_of("a"), math.log(1.6), rel_tol=1e-12)
    assert len(idx) == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (1.5, 0.3), (0.9, 1.0)])
def test_agrees_with_bm25s_lucene(seed, k1, b):
    docs = random_corpus(seed)
    ours = BM25Index.build(docs, k1=k1, b=b)
    ref = bm25s.BM25(method="lucene", k1=k1, b=b)
    ref.index(docs, show_progress=False)
    rng = np.random.default_rng(100 + seed)
    for _ in range(20):
        q = [f"w{i}" for i in rng.integers(0, 45, size=int(rng.integers(1, 6)))]  # w40+ are unknown
        if not any(t in ref.vocab_dict for t in q):
            continue
        np.testing.assert_allclose(ours.scores(q), ref.get_scores(q), rtol=1e-5, atol=1e-6)


def test_top_k_order_and_mask():
    docs = random_corpus(4, n_docs=100)
    idx = BM25Index.build(docs)
    q = ["w3", "w7", "w12"]
    full = idx.scores(q)
    rows, vals = idx.top_k(q, 10)
    assert len(rows) == 10 and np.all(np.diff(vals) <= 0)
    np.testing.assert_allclose(vals, full[rows])
    assert vals[-1] >= np.sort(full)[-10]
    allowed = np.zeros(len(idx), dtype=bool)
    allowed[::3] = True
    rows_m, vals_m = idx.top_k(q, 10, allowed=allowed)
    assert len(rows_m) and allowed[rows_m].all()
    best_allowed = np.sort(np.where(allowed, full, 0))[::-1][: len(rows_m)]
    np.testing.assert_allclose(vals_m, best_allowed)
    with pytest.raises(ValueError):
        idx.top_k(q, 5, allowed=np.ones(3, dtype=bool))


def test_top_k_only_positive_and_ties():
    idx = BM25Index.build([["x"], ["y"], ["x"], ["x"]])
    rows, vals = idx.top_k(["x"], 2)
    assert rows.tolist() == [0, 2]  # equal scores: row order
    rows, _ = idx.top_k(["x"], 10)
    assert rows.tolist() == [0, 2, 3]  # the non-matching row is not padded in
    assert len(idx.top_k(["zzz"], 5)[0]) == 0
    assert len(idx.top_k([], 5)[0]) == 0


def reference_best(scores: np.ndarray, k: int, allowed: np.ndarray | None) -> list[int]:
    ok = scores > 0 if allowed is None else (scores > 0) & allowed
    rows = np.flatnonzero(ok)
    return sorted(rows.tolist(), key=lambda r: (-scores[r], r))[:k]


@pytest.mark.parametrize("seed", range(6))
def test_best_rows_on_large_indexes_is_exact(seed):
    """The sampled threshold (used from 20k rows) returns exactly the plain selection,
    ties at the k-th score and filters included."""
    rng = np.random.default_rng(seed)
    idx = BM25Index.build(TINY)
    n = int(rng.integers(20_000, 150_000))
    # Coarse values make many ties; a share of zeros; some scores far above the rest.
    scores = np.round(rng.gamma(1.0, 1.0, n), 1).astype(np.float32)
    scores[rng.random(n) < 0.3] = 0
    scores[rng.choice(n, 5, replace=False)] += 20
    for k in (1, 10, 50, 200):
        for allowed in (None, rng.random(n) < 0.9, rng.random(n) < 0.01, np.zeros(n, dtype=bool)):
            rows, vals = idx.best_rows(scores, k, allowed)
            assert rows.tolist() == reference_best(scores, k, allowed)
            np.testing.assert_array_equal(vals, scores[rows])


@pytest.mark.parametrize("stride", range(2, 16))
def test_best_rows_when_a_sample_overestimates(stride):
    """A few high scores on a regular stride can fill a strided sample's top: fewer than k
    rows then reach its threshold and the selection must fall back to every positive row."""
    rng = np.random.default_rng(stride)
    n, k = 100_000, 50
    scores = rng.random(n).astype(np.float32)
    scores[: 30 * stride : stride] = 100.0
    rows, _ = BM25Index.build(TINY).best_rows(scores, k)
    assert rows.tolist() == reference_best(scores, k, None)


def test_term_weights_sum_to_score():
    docs = random_corpus(5)
    idx = BM25Index.build(docs)
    q = ["w0", "w2", "w2", "w30", "unknown"]
    full = idx.scores(q)
    for row in range(len(idx)):
        tw = idx.term_weights(q, row)
        assert set(tw) <= {"w0", "w2", "w30"}
        assert all(v > 0 for v in tw.values())
        assert sum(tw.values()) == pytest.approx(float(full[row]), rel=1e-5, abs=1e-6)


def test_max_score():
    docs = random_corpus(6)
    q = ["w1", "w4", "w4", "w20"]
    idx = BM25Index.build(docs + [list(q)])
    s = idx.scores(q)
    # The document made of the query itself scores exactly max_score.
    assert idx.max_score(q) == pytest.approx(float(s[-1]), rel=1e-5)
    assert idx.max_score(q, bound=True) >= s.max()
    assert idx.max_score(["nope"]) == 0.0


def test_delta_with_reference_matches_base():
    docs = random_corpus(7, n_docs=120)
    base = BM25Index.build(docs, k1=1.3, b=0.7)
    delta = BM25Index.build(docs[40:50], k1=1.3, b=0.7, reference=base)
    assert delta.avgdl == base.avgdl and len(delta) == 10
    for q in (["w0", "w3"], ["w11", "w11", "w25"], ["w39"]):
        np.testing.assert_allclose(delta.scores(q), base.scores(q)[40:50], rtol=1e-6, atol=1e-7)
        assert delta.max_score(q) == pytest.approx(base.max_score(q)) or not any(t in delta.vocab for t in q)


def test_delta_unknown_terms_get_max_idf():
    base = BM25Index.build(TINY)
    delta = BM25Index.build([["a", "new"]], reference=base)
    expected = float(lucene_idf(1, 3))  # as if seen once in the base
    assert delta.idf_of("new") == pytest.approx(expected)
    assert expected >= base.idf.max()
    assert delta.idf_of("a") == pytest.approx(base.idf_of("a"))
    with pytest.raises(ValueError):
        BM25Index.build([["a"]], k1=2.0, reference=base)


def test_save_load_roundtrip(tmp_path):
    docs = random_corpus(8, n_docs=80) + [["无人机", "巡检", "无人机"]]
    idx = BM25Index.build(docs, k1=1.1, b=0.6)
    idx.save(tmp_path / "bm25")
    assert not list((tmp_path / "bm25").glob("*.pkl"))
    for loaded in (BM25Index.load(tmp_path / "bm25"), BM25Index().load(tmp_path / "bm25")):
        assert len(loaded) == len(idx) and loaded.terms == idx.terms
        assert (loaded.k1, loaded.b, loaded.avgdl) == (idx.k1, idx.b, idx.avgdl)
        for q in (["w1", "w2"], ["无人机"], ["w5", "w5", "巡检"]):
            np.testing.assert_array_equal(loaded.scores(q), idx.scores(q))
            assert loaded.term_weights(q, len(idx) - 1) == idx.term_weights(q, len(idx) - 1)
        # A loaded base can still serve as a reference for a delta.
        d = BM25Index.build(docs[:3], reference=loaded)
        np.testing.assert_allclose(d.scores(["w1"]), idx.scores(["w1"])[:3], rtol=1e-6)


def test_empty_index_and_docs():
    idx = BM25Index.build([])
    assert len(idx) == 0 and idx.scores(["a"]).shape == (0,)
    assert len(idx.top_k(["a"], 3)[0]) == 0
    idx = BM25Index.build([[], ["a"], []])
    assert idx.scores(["a"]).tolist()[0] == 0.0 and idx.scores(["a"])[1] > 0
