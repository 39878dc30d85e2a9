"""Retrieval quality: lexical-only, dense-only and the shipped ranking, measured with ranx.

Two test collections: the demo corpus's graded labels (need → capability, and the
reverse) and any file in the CSL title → abstract layout (a regression check).
Everything here runs on a real engine built from a database, so it measures exactly
what the service serves.
"""
from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ranx import Qrels, Run, evaluate

from indexer.ranking.hybrid import FEATURES, SIGNALS, Query, RankingModel, query_candidates, rank
from indexer.retrieval.engine import Snapshot


METRICS = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
DEPTH = 100


@dataclass
class LabelledQuery:
    qid: str
    source_kind: str  # kind of the record that is the query
    relevant: dict[str, int]  # target id -> grade


def demo_queries(labels: Iterable[dict[str, Any]], reverse: bool = False) -> list[LabelledQuery]:
    """Need → capability queries from graded labels; `reverse` gives capability → need."""
    by_query: dict[str, dict[str, int]] = {}
    for row in labels:
        q, t = (row["capability_id"], row["need_id"]) if reverse else (row["need_id"], row["capability_id"])
        by_query.setdefault(q, {})[t] = int(row["grade"])
    kind = "capability" if reverse else "need"
    # A query with no relevant target cannot be scored; ranx would count it as 0.
    return [LabelledQuery(q, kind, rel) for q, rel in sorted(by_query.items()) if max(rel.values()) > 0]


def record_query(snapshot: Snapshot, kind: str, record_id: str) -> Query | None:
    found = snapshot.locate(kind, record_id)
    if found is None:
        return None
    seg, row = found
    return Query(vector=seg.query_vectors[row], tokens=seg.tokens[row], domains=seg.given_domains_of(row))


def _single_signal_run(snapshot: Snapshot, target: str, query: Query, signal: str) -> dict[str, float]:
    """Rank the whole target corpus by one signal alone (no fusion, no candidate pre-selection)."""
    out: dict[str, float] = {}
    for seg, tomb in snapshot.segments(target):
        if len(seg) == 0:
            continue
        allowed = seg.allowed(None, include_restricted=True, excluded_rows=tomb)
        if signal == "dense":
            scores = seg.doc_vectors @ query.vector
        else:
            scores = seg.lexical.scores(query.tokens).astype(np.float64)
        scores = np.where(allowed, scores, -np.inf)
        top = np.argsort(-scores)[:DEPTH]
        for r in top:
            if np.isfinite(scores[r]) and (signal == "dense" or scores[r] > 0):
                out[seg.ids[int(r)]] = float(scores[r])
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:DEPTH])


def runs_for(snapshot: Snapshot, queries: list[LabelledQuery], model: RankingModel,
             systems: Iterable[str] = ("lexical", "dense", "shipped")) -> dict[str, dict[str, dict[str, float]]]:
    runs: dict[str, dict[str, dict[str, float]]] = {s: {} for s in systems}
    for lq in queries:
        query = record_query(snapshot, lq.source_kind, lq.qid)
        if query is None:
            continue
        target = "capability" if lq.source_kind == "need" else "need"
        for system in systems:
            if system == "shipped":
                hits = rank(snapshot, target, query, model, include_restricted=True)[:DEPTH]
                run = {h.id: h.logit for h in hits}
            else:
                run = _single_signal_run(snapshot, target, query, system)
            runs[system][lq.qid] = run or {"__none__": 0.0}
    return runs


def score_runs(queries: list[LabelledQuery], runs: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    qrels = Qrels({q.qid: q.relevant for q in queries})
    return {name: {k: float(v) for k, v in evaluate(qrels, Run(run), METRICS, make_comparable=True).items()}
            for name, run in runs.items()}


def per_query(queries: list[LabelledQuery], run: dict[str, dict[str, float]], metric: str = "ndcg@10",
              ) -> dict[str, float]:
    """`metric` of each query on its own (ranx, as score_runs), for paired comparisons; a query
    with nothing retrieved scores 0, as make_comparable counts it there."""
    return {q.qid: float(evaluate(Qrels({q.qid: q.relevant}), Run({q.qid: run[q.qid]}), metric))
            if run.get(q.qid) else 0.0 for q in queries}


def paired_difference(a: dict[str, float], b: dict[str, float], rounds: int = 10_000,
                      seed: int = 0) -> dict[str, float]:
    """Mean of a − b over the queries both hold, with a 95% bootstrap interval (queries resampled)."""
    diff = np.array([a[q] - b[q] for q in sorted(a.keys() & b.keys())])
    if len(diff) == 0:
        return {"mean": 0.0, "low": 0.0, "high": 0.0, "queries": 0}
    samples = np.random.default_rng(seed).choice(diff, (rounds, len(diff))).mean(axis=1)
    low, high = np.percentile(samples, [2.5, 97.5])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "queries": len(diff)}


# ---- training data for the fusion -----------------------------------------------------
# The signals a fit may weigh. Dense gets weight 0: beside the passage signal (whose best passage
# is the whole text for a short record) it added nothing measurable on any collection, and its
# correlation with passage made the fitted weights unstable (docs/quality.md, "Ranking decisions").
FITTED = ("passage", "lexical", "domain")


def training_rows(snapshot: Snapshot, queries: list[LabelledQuery], raw: bool = False,
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Signals (SIGNALS order, standardized as ranked, or as measured if `raw`; domain NaN where
    unknown) of every candidate the ranker considers, with the graded label (0 if unlabelled)."""
    xs, ys, groups = [], [], []
    for lq in queries:
        query = record_query(snapshot, lq.source_kind, lq.qid)
        if query is None:
            continue
        target = "capability" if lq.source_kind == "need" else "need"
        found = query_candidates(snapshot, target, query, None, True, None)
        if found is None:
            continue
        f = found.features
        domain = np.where(f["domain_known"] > 0, f["domain"], np.nan)
        xs.append(np.column_stack([domain if s == "domain" else f[f"{s}_raw" if raw else s] for s in SIGNALS]))
        ys.extend(lq.relevant.get(i, 0) for i in found.ids)
        groups.extend([lq.qid] * len(found.ids))
    x = np.vstack(xs) if xs else np.zeros((0, len(SIGNALS)))
    return x, np.array(ys, dtype=np.int64), groups


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0,
                 sample_weight: np.ndarray | None = None) -> RankingModel:
    """Logistic regression of "relevant (grade ≥ 1)" on the FITTED signals; grade 2 counts double.

    Fitted twice: on the pairs whose domain agreement is known (NaN: unknown), and on every
    pair without the domain signal, for pairs with a side that has no client-given domain.
    """
    target = (y >= 1).astype(int)
    weight = label_weight(y) * (1.0 if sample_weight is None else sample_weight)
    d = SIGNALS.index("domain")
    known = ~np.isnan(x[:, d])
    untagged = _fit(x, target, weight, c, without="domain")
    if len(set(target[known].tolist())) < 2:
        return untagged  # no pair with a known domain agreement (CSL alone): one model
    model = _fit(x[known], target[known], weight[known], c)
    model.untagged = untagged
    return model


def _fit(x: np.ndarray, target: np.ndarray, weight: np.ndarray, c: float, without: str | None = None
         ) -> RankingModel:
    """One logistic regression; the signal `without` (and any not FITTED) gets weight 0."""
    from sklearn.linear_model import LogisticRegression

    use = [i for i, s in enumerate(SIGNALS) if s != without and s in FITTED]
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit(x[:, use], target, sample_weight=weight)
    weights = dict.fromkeys(SIGNALS, 0.0)
    weights.update({SIGNALS[i]: round(float(w), 4) for i, w in zip(use, clf.coef_[0])})
    return RankingModel(weights=weights, bias=round(float(clf.intercept_[0]), 4),
                        info={"features": FEATURES, "fitted": list(FITTED), "rows": int(len(target))})


def label_weight(y: np.ndarray) -> np.ndarray:
    """Each pair's weight in a fit: grade 2 counts double."""
    return np.where(y >= 2, 2.0, 1.0)


def judged_share(queries: list[LabelledQuery], run: dict[str, dict[str, float]], judged: dict[str, set[str]],
                 k: int = 10) -> float:
    """Share of the top-k results that were judged (pooled labels): how far an nDCG can be trusted."""
    shares = []
    for q in queries:
        top = sorted(run.get(q.qid, {}).items(), key=lambda kv: -kv[1])[:k]
        if top:
            shares.append(sum(t in judged.get(q.qid, set()) for t, _ in top) / len(top))
    return float(np.mean(shares)) if shares else 0.0


def folds(qids: list[str], k: int = 5, seed: int = 13) -> list[set[str]]:
    unique = sorted(set(qids))
    random.Random(seed).shuffle(unique)
    return [set(unique[i::k]) for i in range(k)]


def cross_validated_runs(snapshot: Snapshot, queries: list[LabelledQuery], c: float = 1.0,
                         k: int = 5) -> dict[str, dict[str, float]]:
    """Out-of-fold shipped-ranking run: each query ranked by weights fitted without it."""
    x, y, groups = training_rows(snapshot, queries)
    g = np.array(groups)
    run: dict[str, dict[str, float]] = {}
    for held in folds(groups, k):
        mask = np.isin(g, list(held))
        model = fit_logistic(x[~mask], y[~mask], c)
        held_queries = [q for q in queries if q.qid in held]
        run.update(runs_for(snapshot, held_queries, model, systems=("shipped",))["shipped"])
    return run


# ---- CSL title → abstract ------------------------------------------------------------------
def read_csl(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """(title, abstract) pairs from a CSL 'ts' file: `to title<TAB>abstract<TAB>title` per line."""
    pairs = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[1] and parts[2]:
                pairs.append((parts[2].strip(), parts[1].strip()))
    return pairs[:limit] if limit else pairs


def csl_records(pairs: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[LabelledQuery]]:
    """Titles as needs, abstracts as capabilities, each title's own abstract relevant."""
    needs, caps, queries = [], [], []
    for i, (title, abstract) in enumerate(pairs):
        needs.append({"id": f"q{i}", "title": title[:200], "description": ""})
        # An abstract has no title of its own (the title is the query): its opening stands in.
        caps.append({"id": f"d{i}", "title": abstract[:40], "description": abstract[40:5000]})
        queries.append(LabelledQuery(f"q{i}", "need", {f"d{i}": 1}))
    return needs, caps, queries


