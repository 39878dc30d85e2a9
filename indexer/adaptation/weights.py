"""Fusion weights for an adapted encoder, fitted to its own scores on the training labels.

The ranking weighs per-query z-scores, so the shipped weights carry over to an adapted encoder
(docs/quality.md, "Fusion"); where the deployment has enough labels (feedback, or the demo's),
weights fitted to the adapted encoder's own signals may still fit it better, and the guard
judges both. The fit uses only the labels
the encoder may train on (the held-out half judges the result): a logistic regression of
relevance on every candidate's signals, as `scenematch tune` fits, both directions, grade 2
counted double. The fitted score stays a calibrated probability of relevance.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from indexer.ranking.evaluation import demo_queries, fit_logistic, training_rows
from indexer.ranking.hybrid import RankingModel
from indexer.retrieval.engine import Snapshot

# Fewer labelled need → capability queries than this and the weights would follow their noise:
# the version keeps the shipped weights.
MIN_QUERIES = 20


def label_rows(grades: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    return [{"need_id": n, "capability_id": c, "grade": g} for (n, c), g in sorted(grades.items())]


def fit(snapshot: Snapshot, grades: dict[tuple[str, str], int], c: float = 1.0) -> RankingModel | None:
    """Weights for `snapshot`'s encoder from graded (need, capability) pairs; None if too few."""
    rows = label_rows(grades)
    forward = demo_queries(rows)
    if len(forward) < MIN_QUERIES:
        return None
    parts = [training_rows(snapshot, queries) for queries in (forward, demo_queries(rows, reverse=True))]
    parts = [(x, y) for x, y, _ in parts if len(y)]
    y = np.concatenate([y for _, y in parts]) if parts else np.zeros(0)
    if len(set((y >= 1).tolist())) < 2:
        return None  # no candidates, or one class only: nothing to fit
    x = np.vstack([x for x, _ in parts])
    model = fit_logistic(x, y, c)
    model.info = {**model.info, "fitted": True, "labels": "training half of the demo labels and feedback (both directions)",
                  "queries": len(forward), "rows": int(len(y)), "C": c, "model": snapshot.model,
                  "date": dt.date.today().isoformat()}
    return model
