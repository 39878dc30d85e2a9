"""Ranking internals that the matching tests only see through the API."""
from __future__ import annotations

import types

import numpy as np

from indexer.ranking import best_passages


def test_best_passages_is_the_best_cosine_per_row_or_the_whole_text():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 6, 50)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    passages = rng.normal(size=(offsets[-1], 8)).astype(np.float32)
    docs = rng.normal(size=(50, 8)).astype(np.float32)
    seg = types.SimpleNamespace(passage_offsets=offsets, passage_vectors=passages, doc_vectors=docs)
    vector = rng.normal(size=8).astype(np.float32)
    rows = np.array([3, 1, 7, 20, 49, 0, 3])
    assert {0, 1, 3, 5} <= set(lengths[rows].tolist())  # no passage, one, several
    got = best_passages(seg, rows, vector, docs[rows] @ vector)
    expected = [(passages[offsets[r]:offsets[r + 1]] @ vector).max() if lengths[r] else docs[r] @ vector
                for r in rows]
    assert np.allclose(got, expected, atol=1e-6)
    assert best_passages(seg, rows[:0], vector, docs[rows[:0]] @ vector).shape == (0,)
