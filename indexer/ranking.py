"""Hybrid ranking: candidates from the dense and lexical indexes, one calibrated score.

Each candidate gets a few signals, every one of them in 0..1 or a cosine:
  dense    cosine of the query vector and the record's whole-text vector
  passage  best cosine of the query vector and any passage of the record
  lexical  BM25 over jieba tokens, divided by the score of the query against itself
  domain   1 when the two sides share a client-given domain of the taxonomy, else 0
  rel      dense cosine minus the best dense cosine among this query's candidates
The score is a logistic model of those signals:
  logit = bias + Σ weight_i · signal_i,  score = 1 / (1 + e^-logit)
fitted on graded labels (`scenematch tune`), so a score reads as the estimated
probability that a civil servant would judge the match relevant, the same for every
query. The weights ship in ranking_weights.json beside this file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.engine import Snapshot
from indexer.segment import Filters, Segment

WEIGHTS_FILE = Path(__file__).with_name("ranking_weights.json")
SIGNALS = ("dense", "passage", "lexical", "domain", "rel")
DENSE_CANDIDATES = 100
LEXICAL_CANDIDATES = 50


@dataclass
class RankingModel:
    weights: dict[str, float]
    bias: float
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = WEIGHTS_FILE) -> "RankingModel":
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(weights=data["weights"], bias=data["bias"], info=data.get("info", {}))

    def save(self, path: Path = WEIGHTS_FILE) -> None:
        path.write_text(json.dumps({"weights": self.weights, "bias": self.bias, "info": self.info},
                                   ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(features.values())))
        out = np.full(n, self.bias, dtype=np.float64)
        for name, w in self.weights.items():
            out += w * features[name]
        return out


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class Query:
    """What is searched for: a stored record (match by id) or free text."""

    vector: np.ndarray  # (d,) query-role embedding
    tokens: list[str]
    domains: list[str]
    exclude_id: str | None = None


@dataclass
class Hit:
    segment: Segment
    row: int
    id: str
    signals: dict[str, float]
    logit: float
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


def candidate_features(snapshot: Snapshot, kind: str, query: Query, filters: Filters | None,
                       include_restricted: bool, default_statuses: tuple[str, ...] | None,
                       ) -> list[tuple[Segment, np.ndarray, dict[str, np.ndarray]]]:
    """Candidates of every segment with their raw signals."""
    out = []
    qdomains = set(query.domains)
    lex_norm = None
    for seg, tomb in snapshot.segments(kind):
        if len(seg) == 0:
            continue
        allowed = seg.allowed(filters, include_restricted=include_restricted, excluded_rows=tomb,
                              default_statuses=default_statuses)
        if query.exclude_id is not None and query.exclude_id in seg.row_of:
            allowed[seg.row_of[query.exclude_id]] = False
        allowed_rows = np.flatnonzero(allowed)
        if len(allowed_rows) == 0:
            continue
        all_allowed = len(allowed_rows) == len(seg)
        _, dense_ids = seg.dense.search(query.vector[None, :], min(DENSE_CANDIDATES, len(allowed_rows)),
                                        allowed_ids=None if all_allowed else allowed_rows)
        lex_rows, _ = seg.lexical.top_k(query.tokens, LEXICAL_CANDIDATES, allowed=allowed)
        rows = np.union1d(dense_ids[0][dense_ids[0] >= 0], lex_rows).astype(np.int64)
        if len(rows) == 0:
            continue
        if lex_norm is None:
            # Normalise with the base segment's statistics so every segment is on one scale.
            lex_norm = snapshot.base[kind].lexical.max_score(query.tokens) or 1.0
        dense = seg.doc_vectors[rows] @ query.vector
        passage = np.array([_best_passage(seg, r, query.vector) for r in rows], dtype=np.float32)
        lexical_raw = seg.lexical.scores(query.tokens, rows).astype(np.float64)
        lexical = np.clip(lexical_raw / lex_norm, 0.0, 1.0)
        if qdomains:
            cols = [seg.domain_codes.index(c) for c in qdomains if c in seg.domain_codes]
            # Predicted domains are shown, not ranked on: a classifier error (about one in
            # five) would otherwise push good matches down (CSL dev: nDCG@10 0.991 vs 0.994).
            domain = (seg.domain_mask[rows][:, cols].any(axis=1)
                      & ~seg.domain_predicted[rows]).astype(np.float64)
        else:
            domain = np.zeros(len(rows))
        out.append((seg, rows, {"dense": dense.astype(np.float64), "passage": passage.astype(np.float64),
                                "lexical": lexical, "domain": domain, "lexical_raw": lexical_raw}))
    if out:
        best = max(float(f["dense"].max()) for _, _, f in out)
        for _, _, f in out:
            f["rel"] = f["dense"] - best
    return out


def _best_passage(seg: Segment, row: int, vector: np.ndarray) -> float:
    a, b = seg.passage_range(int(row))
    if b <= a:
        return float(seg.doc_vectors[row] @ vector)
    return float((seg.passage_vectors[a:b] @ vector).max())


def rank(snapshot: Snapshot, kind: str, query: Query, model: RankingModel, *,
         filters: Filters | None = None, include_restricted: bool = False,
         default_statuses: tuple[str, ...] | None = None) -> list[Hit]:
    """All candidates, best first, with their signals and per-signal ranks."""
    parts = candidate_features(snapshot, kind, query, filters, include_restricted, default_statuses)
    hits: list[Hit] = []
    for seg, rows, feats in parts:
        logits = model.logits(feats)
        for i, r in enumerate(rows):
            rid = seg.ids[int(r)]
            hits.append(Hit(seg, int(r), rid, {k: float(v[i]) for k, v in feats.items()},
                            float(logits[i]), float(sigmoid(logits[i]))))
    hits.sort(key=lambda h: (-h.logit, h.id))
    for name in SIGNALS:
        order = sorted(range(len(hits)), key=lambda i: (-hits[i].signals[name], hits[i].id))
        for position, i in enumerate(order, start=1):
            hits[i].ranks[name] = position
    return hits


def contributions(model: RankingModel, signals: dict[str, float]) -> dict[str, float]:
    return {name: model.weights.get(name, 0.0) * signals[name] for name in SIGNALS}


def logit_of(model: RankingModel, signals: dict[str, float]) -> float:
    return model.bias + math.fsum(contributions(model, signals).values())
