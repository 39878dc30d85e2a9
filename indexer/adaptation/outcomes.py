"""赛马: refit the ranking's weights on what happened to past matches, keep them only if they win.

Outcomes are graded pairs (need, capability): the latest feedback label (irrelevant 0, relevant 1,
contacted 2, deal 3) and the scenarios that grew from a need (`need_id`) and were delivered by a
capability (3 once a contract is signed or the scenario is built, tested or promoted). A fixed,
hash-based part of the labelled needs is held out (indexer.adaptation.data.held_out); the weights
are fitted on the rest with the project's own fit (indexer.ranking.evaluation.fit_logistic, deals
counted more), and both the served weights and the candidate rank the held-out needs in the served
snapshot. The candidate is committed as a ranking version (models.model_versions, under
DATA_DIR/ranking) and activated only if its held-out nDCG@10 beats the served one by more than
`min_gain`; otherwise the job refuses and says why. A rollback re-activates the previous version
(or none: the served model's own weights).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.adaptation.data import held_out, read_feedback
from indexer.adaptation.evaluate import K, ranked_list_metrics
from indexer.ranking.evaluation import LabelledQuery, demo_queries, fit_logistic, paired_difference, record_query, training_rows
from indexer.ranking.hybrid import RankingModel, rank
from indexer.retrieval.engine import Snapshot
from models import model_versions as mv
from models.db import Scenario
from models.scenario_store import DELIVERY_STAGES

DEAL = 3


class OutcomeError(RuntimeError):
    """The job cannot run (the message says why)."""


@dataclass
class OutcomeConfig:
    holdout_fraction: float = 0.3
    min_gain: float = 0.0  # held-out nDCG@10 must rise by more than this
    min_train_queries: int = 10
    min_held_out_queries: int = 5
    deal_weight: float = 2.0  # a deal (or a delivered scenario) weighs this much more than a relevant pair
    use_feedback: bool = True
    use_scenarios: bool = True
    c: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scenario_outcomes(session: Session) -> dict[tuple[str, str], int]:
    """(need, capability) → grade from scenarios that grew from a need: 3 once delivered (a signed
    contract, or from the building stage on), 2 while matched (the capability is named as a candidate)."""
    out: dict[tuple[str, str], int] = {}
    stmt = select(Scenario.need_id, Scenario.capability_ids, Scenario.stage, Scenario.signed_at,
                  Scenario.contract_wan).where(Scenario.need_id.is_not(None))
    for need_id, caps, stage, signed_at, contract in session.execute(stmt):
        delivered = stage in DELIVERY_STAGES or signed_at is not None or contract is not None
        grade = DEAL if delivered else 2 if stage == "matching" else 0
        for cap in caps or ():
            if grade:
                out[(need_id, cap)] = max(grade, out.get((need_id, cap), 0))
    return out


def collect(session: Session, config: OutcomeConfig) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """All graded outcome pairs and where they came from; a scenario outcome beats a lower label."""
    feedback = read_feedback(session)[0] if config.use_feedback else {}
    scenarios = scenario_outcomes(session) if config.use_scenarios else {}
    grades = dict(feedback)
    for pair, grade in scenarios.items():
        grades[pair] = max(grade, grades.get(pair, 0))
    return grades, {"feedback_pairs": len(feedback), "scenario_pairs": len(scenarios), "pairs": len(grades),
                    "deals": sum(g >= DEAL for g in grades.values())}


def per_query_ndcg(snapshot: Snapshot, queries: list[LabelledQuery], model: RankingModel) -> dict[str, float]:
    """nDCG@10 of each held-out need ranked in the served snapshot with `model` (graded gains)."""
    out = {}
    for lq in queries:
        query = record_query(snapshot, "need", lq.qid)
        if query is None:
            continue
        hits = rank(snapshot, "capability", query, model, include_restricted=True)[:K]
        out[lq.qid] = ranked_list_metrics([lq.relevant.get(h.id, 0) for h in hits], list(lq.relevant.values()))[0]
    return out


def fit_candidate(snapshot: Snapshot, train: list[LabelledQuery], config: OutcomeConfig) -> RankingModel:
    x, y, _ = training_rows(snapshot, train)
    if len(set((y >= 1).tolist())) < 2:
        raise OutcomeError("the training outcomes hold only one class (no relevant pair among the candidates, "
                           "or no other): nothing to fit")
    weight = np.where(y >= DEAL, config.deal_weight, 1.0)
    return fit_logistic(x, y, config.c, sample_weight=weight)


def learn(snapshot: Snapshot, grades: dict[tuple[str, str], int], served: RankingModel,
          config: OutcomeConfig) -> dict[str, Any]:
    """Fit on the held-in needs, judge on the held-out ones; the decision and its figures."""
    rows = [{"need_id": n, "capability_id": c, "grade": g} for (n, c), g in sorted(grades.items())]
    queries = [q for q in demo_queries(rows) if snapshot.locate("need", q.qid) is not None]
    test = [q for q in queries if held_out(f"outcome:{q.qid}", config.holdout_fraction)]
    train = [q for q in queries if q not in test]
    counts = {"labelled_needs": len(queries), "train_needs": len(train), "held_out_needs": len(test)}
    if len(train) < config.min_train_queries or len(test) < config.min_held_out_queries:
        return {"accepted": False, "counts": counts, "candidate": None, "metrics": None,
                "reason": f"not enough outcomes: {len(train)} needs to fit on (at least {config.min_train_queries}) "
                          f"and {len(test)} held-out needs to judge on (at least {config.min_held_out_queries}); "
                          "collect more feedback (relevant / contacted / deal) or scenario outcomes"}
    candidate = fit_candidate(snapshot, train, config)
    before, after = per_query_ndcg(snapshot, test, served), per_query_ndcg(snapshot, test, candidate)
    diff = paired_difference(after, before)
    metrics = {"metric": f"ndcg@{K}", "served": round(float(np.mean(list(before.values()))), 4),
               "candidate": round(float(np.mean(list(after.values()))), 4),
               "gain": {k: round(v, 4) if isinstance(v, float) else v for k, v in diff.items()},
               "held_out_needs": len(after)}
    accepted = diff["mean"] > config.min_gain
    if accepted:
        reason = (f"the refitted weights rank the held-out needs better: nDCG@{K} {metrics['served']:.4f} → "
                  f"{metrics['candidate']:.4f} (gain {diff['mean']:+.4f}, 95% interval {diff['low']:+.4f} to "
                  f"{diff['high']:+.4f}, {len(after)} needs)")
    else:
        reason = (f"the refitted weights do not help on the held-out needs: nDCG@{K} {metrics['served']:.4f} → "
                  f"{metrics['candidate']:.4f} (gain {diff['mean']:+.4f}, needs more than {config.min_gain:+.4f}); "
                  "the served weights stay")
    return {"accepted": accepted, "reason": reason, "counts": counts, "metrics": metrics, "candidate": candidate}


def new_version_name() -> str:
    return "r" + mv.new_version_name()[1:]


def run(root: Path, snapshot: Snapshot, grades: dict[tuple[str, str], int], label_counts: dict[str, int],
        served: RankingModel, config: OutcomeConfig) -> dict[str, Any]:
    """One job: learn, then commit and activate the candidate if it won. Holds the ranking store's lock."""
    def locked() -> dict[str, Any]:
        mv.cleanup(root)
        outcome = learn(snapshot, grades, served, config)
        candidate: RankingModel | None = outcome.pop("candidate")
        result = {**outcome, "labels": label_counts, "config": config.to_dict(), "model": snapshot.model,
                  "index_version": snapshot.version, "previous_version": mv.active_version(root),
                  "served_weights": served.to_dict(), "version": None, "decision": "refused"}
        if candidate is not None:
            candidate.info = {**candidate.info, "fitted": True, "method": "赛马: refitted on feedback and scenario outcomes",
                              "date": dt.date.today().isoformat(), "model": snapshot.model}
            result["candidate_weights"] = candidate.to_dict()
        if outcome["accepted"] and candidate is not None:
            version = new_version_name()
            mv.temp_folder(root, version)
            mv.commit_version(root, version, {**result, "ranking": candidate.to_dict(), "decision": "activated",
                                              "created_at": dt.datetime.now(dt.timezone.utc).isoformat()})
            mv.activate(root, version)
            result.update(version=version, decision="activated")
        return result

    return mv.with_lock(root, locked)


def rollback(root: Path) -> dict[str, Any]:
    """Re-activate the version before the active one (or none); the one left is discarded."""
    def locked() -> dict[str, Any]:
        current = mv.active_version(root)
        if current is None:
            raise OutcomeError("no learned weights are active: the served model's own weights serve")
        target = mv.previous_version(root)
        mv.activate(root, target)
        mv.discard(root, current)
        return {"rolled_back": current, "active_version": target}

    return mv.with_lock(root, locked)


def status(root: Path) -> dict[str, Any]:
    return {"active_version": mv.active_version(root), "rollback_to": mv.previous_version(root),
            "items": [{k: v for k, v in m.items() if k in ("version", "active", "created_at", "model", "metrics",
                                                            "reason", "labels", "ranking")}
                      for m in mv.list_versions(root)]}
