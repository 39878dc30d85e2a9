"""Dense retrieval quality of an encoder on held-out data, and the activation guard.

Each evaluation set is a small retrieval task (queries, a corpus, graded relevance);
an encoder is scored by exact cosine search with numpy, the way the dense signal of
the index ranks records. The guard compares a candidate with the serving encoder on
every set that has enough queries to mean something.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.ranking.hybrid import Query, RankingModel, rank
from indexer.retrieval.embedding import Encoder
from indexer.retrieval.engine import Snapshot

K = 10
# Fewer held-out queries than this make a set too noisy to veto (or allow) a model.
MIN_QUERIES = {"pairs": 5, "general": 5, "labels": 5, "feedback": 5}
# Sets that measure matching (need → capability) on labels or feedback: where the deployment has
# them, one must be judged and none may lose.
MATCHING_SETS = ("labels", "feedback", "labels_served", "feedback_served")
# Without labels (the normal deployment), the label-free probes judge: retrieval of held-out
# records' own descriptions, and of seed records the deployment never trains on. On the realistic
# corpus and on real records, candidates that passed them matched better (docs/quality.md).
LABEL_FREE_SETS = ("pairs", "general")


@dataclass
class RetrievalSet:
    """Queries against a corpus; `qrels[i]` maps corpus rows to the grade of query i."""

    name: str
    queries: list[str]
    corpus: list[str]
    qrels: list[dict[int, int]]
    description: str = ""
    query_ids: list[str] = field(default_factory=list)
    corpus_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.queries)


def ranked_list_metrics(ranked: list[int], grades: list[int], k: int = K) -> tuple[float, float]:
    """nDCG@k (gain 2^grade - 1) and reciprocal rank (first grade > 0) of one ranked list.

    `ranked` holds the grades of the returned items in rank order; `grades` every known grade.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.array([2.0 ** g - 1.0 for g in ranked[:k]])
    ideal = np.sort(np.array([2.0 ** g - 1.0 for g in grades]))[::-1][:k]
    idcg = float(np.sum(ideal * discounts[:len(ideal)]))
    ndcg = float(np.sum(gains * discounts[:len(gains)])) / idcg if idcg > 0 else 0.0
    hits = np.flatnonzero(gains > 0)
    return ndcg, (1.0 / (hits[0] + 1) if len(hits) else 0.0)


def ranking_metrics(scores: np.ndarray, qrels: list[dict[int, int]], k: int = K) -> dict[str, float]:
    """Mean nDCG@k and MRR@k of ranking each query's row of `scores` (graded `qrels`)."""
    names = (f"ndcg@{k}", f"mrr@{k}")
    if len(qrels) == 0:
        return dict.fromkeys(names, 0.0)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    per_query = [ranked_list_metrics([rel.get(int(j), 0) for j in top[i]], list(rel.values()), k)
                 for i, rel in enumerate(qrels)]
    return {names[0]: float(np.mean([q[0] for q in per_query])),
            names[1]: float(np.mean([q[1] for q in per_query]))}


def evaluate(encoder: Encoder, rset: RetrievalSet,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    if not rset.queries or not rset.corpus:
        return {"queries": 0, "corpus": len(rset.corpus), f"ndcg@{K}": None, f"mrr@{K}": None}
    corpus = encoder.encode_passages(rset.corpus, progress=progress)
    queries = encoder.encode_queries(rset.queries)
    metrics = ranking_metrics(queries @ corpus.T, rset.qrels)
    return {"queries": len(rset.queries), "corpus": len(rset.corpus),
            **{k: round(v, 4) for k, v in metrics.items()}}


def evaluate_all(encoder: Encoder, sets: list[RetrievalSet],
                 progress: Callable[[float, str], None] | None = None) -> dict[str, dict[str, Any]]:
    out = {}
    total = max(1, sum(len(s.corpus) for s in sets))
    done = 0
    for rset in sets:
        def step(d: int, _t: int, base: int = done, name: str = rset.name) -> None:
            if progress:
                progress((base + d) / total, name)
        out[rset.name] = {**evaluate(encoder, rset, step), "description": rset.description}
        done += len(rset.corpus)
    return out


def served_metrics(snapshot: Snapshot, rset: RetrievalSet, model: RankingModel,
                   kind: str = "need", target: str = "capability") -> dict[str, Any]:
    """The shipped ranking (all signals fused) of `rset`'s queries, matched by id in `snapshot`.

    This is what users get from an index: an encoder can keep its own dense quality and still
    hurt the fused ranking, because the fusion weights were fitted to another score scale.
    """
    per_query = []
    for query_id, rel in zip(rset.query_ids, rset.qrels):
        found = snapshot.locate(kind, query_id)
        if found is None:
            continue
        seg, row = found
        query = Query(vector=seg.query_vectors[row], tokens=seg.tokens[row], domains=seg.domains_of(row))
        hits = rank(snapshot, target, query, model, include_restricted=True)[:K]
        by_id = {rset.corpus_ids[j]: g for j, g in rel.items()}
        per_query.append(ranked_list_metrics([by_id.get(h.id, 0) for h in hits], list(by_id.values())))
    if not per_query:
        return {"queries": 0, f"ndcg@{K}": None, f"mrr@{K}": None}
    return {"queries": len(per_query), f"ndcg@{K}": round(float(np.mean([q[0] for q in per_query])), 4),
            f"mrr@{K}": round(float(np.mean([q[1] for q in per_query])), 4)}


def guard(candidate: dict[str, dict[str, Any]], active: dict[str, dict[str, Any]],
          tolerance: float, tolerances: dict[str, float] | None = None) -> dict[str, Any]:
    """Accept only if the candidate loses (beyond its set's tolerance) on no set large enough to
    judge, and matching was judged: on labels or feedback where the deployment has them, else on
    both label-free probes."""
    metric = f"ndcg@{K}"
    checks = []
    for name, cand in candidate.items():
        act = active.get(name, {})
        c, a = cand.get(metric), act.get(metric)
        allowed = (tolerances or {}).get(name, tolerance)
        judged = c is not None and a is not None and cand["queries"] >= MIN_QUERIES.get(name, 5)
        delta = round(c - a, 4) if c is not None and a is not None else None
        checks.append({"set": name, "metric": metric, "candidate": c, "active": a, "delta": delta,
                       "queries": cand["queries"], "judged": judged, "tolerance": allowed,
                       "passed": (not judged) or c >= a - allowed})
    judged = [c for c in checks if c["judged"]]
    names = {c["set"] for c in judged}
    matching = names & set(MATCHING_SETS)
    label_free = set(LABEL_FREE_SETS) <= names
    accepted = bool(matching or label_free) and all(c["passed"] for c in judged)
    if not (matching or label_free):
        reason = (f"nothing to judge matching on: neither {MIN_QUERIES['labels']} held-out needs with labels "
                  f"or feedback, nor enough held-out records for {' and '.join(LABEL_FREE_SETS)}")
    elif accepted:
        reason = "the candidate does not lose on any held-out set" + (
            "" if matching else " (judged without labels: held-out records' own pairs and seed records)")
    else:
        lost = ", ".join(f"{c['set']} ({c['candidate']:.4f} < {c['active']:.4f})"
                         for c in judged if not c["passed"])
        reason = f"the candidate loses on: {lost}"
    return {"accepted": accepted, "tolerance": tolerance, "checks": checks, "reason": reason,
            "judged_by": "labels" if matching else "label-free probes"}
