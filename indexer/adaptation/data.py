"""Training pairs and held-out evaluation sets for encoder adaptation.

Training pairs are the stored records' own pairs (by default title → the opening of the body,
AdaptConfig.record_pairs) and, where there are any, labelled pairs (need → capability) from
feedback and the seed corpora's labels. The own pairs need no labels: on real published records
and on the realistic corpus they are what raised matching (docs/quality.md, "Encoder adaptation").
A fixed, hash-based part of the records and of the labelled needs is held out and never trained
on, not even as one side of a labelled pair: the guard (indexer.adaptation.evaluate) scores the
candidate and the serving model on it, and on seed records the deployment does not hold
("general": a check that the encoder keeps reading other records well).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from indexer.adaptation.evaluate import RetrievalSet
from indexer.retrieval import builder
from indexer.retrieval.documents import CAPABILITY, NEED, IndexDoc
from models import repository
from models.database import session_scope
from models.db import Feedback
from models.taxonomy import SEED_DIR

Progress = Callable[[float, str], None]
# Every seed corpus's labels: a deployment holding (part of) a seed corpus gets them for training
# and judging; pairs whose records it does not hold are ignored.
SEED_LABEL_DIRS = (SEED_DIR / "realistic" / "labels", SEED_DIR / "demo" / "labels")
SEED_RECORD_DIRS = (SEED_DIR / "realistic", SEED_DIR / "demo")
RECORD_PAIR_MODES = ("lead", "whole", "passages", "both", "none")
# The opening of a body the "lead" pairs train on: about one passage of real records' text, the
# part that says what the record is about before specs and boilerplate (measured: docs/quality.md).
LEAD_CHARS = 300
GENERAL_RECORDS = 300
FEEDBACK_GRADES = {"irrelevant": 0, "relevant": 1, "contacted": 2, "deal": 3}
POSITIVE_GRADE = 1  # feedback grade at or above which a pair is a positive
DEMO_POSITIVE, DEMO_NEGATIVE = 2, 0  # grade-1 demo labels are "partly relevant": not trained on


class AdaptError(RuntimeError):
    """Adaptation cannot run or did not produce a model (the message says why)."""


@dataclass
class AdaptConfig:
    """Hyper-parameters and bounds of one adaptation run (recorded in the model manifest)."""

    max_pairs: int = 2000
    max_seconds: float = 900.0
    batch_size: int = 16
    learning_rate: float = 2e-5
    epochs: float = 1.0
    warmup_ratio: float = 0.1
    seed: int = 42
    max_seq_length: int = 256
    # Frozen token embeddings: same matching quality, less memory and time (docs/quality.md).
    freeze_embeddings: bool = True
    # None: only when labelled pairs (full record texts, long) are trained on; the own pairs are short.
    gradient_checkpointing: bool | None = None
    loss: str = "mnrl"  # or "mnrl_symmetric" (adds the passage → query direction)
    scale: float = 20.0
    threads: int = 0  # 0: every core (the child runs at `nice`, so serving keeps priority)
    nice: int = 10
    record_pairs: str = "lead"  # one of RECORD_PAIR_MODES (see record_pairs)
    use_feedback: bool = True
    # The seed corpora's labels judge a deployment holding them but are not trained on by default:
    # they are no user's judgment of this deployment, training on long labelled texts is slow, and a
    # yardstick trained on stops measuring. Feedback (the deployment's own labels) is trained on.
    use_demo_labels: bool = False
    holdout_fraction: float = 0.1
    max_holdout_records: int = 300
    label_holdout_fraction: float = 0.5
    tolerance: float = 0.005
    # The general probe may move more: it reads records of other deployments' shapes.
    general_tolerance: float = 0.02
    # Refit the ranking's weights to the new encoder on the training labels. Off: the weights weigh
    # per-query z-scores and carry over to an adapted encoder (docs/quality.md, "Fusion").
    refit_ranking: bool = False

    def training_config(self, base_path: str) -> dict[str, Any]:
        keys = ("batch_size", "learning_rate", "epochs", "warmup_ratio", "seed", "max_seq_length",
                "freeze_embeddings", "gradient_checkpointing", "loss", "scale", "threads", "nice",
                "max_seconds")
        out = {"base_path": base_path, **{k: getattr(self, k) for k in keys}}
        if out["threads"] <= 0:
            out["threads"] = os.cpu_count() or 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingData:
    """Training pairs, the held-out evaluation sets, and where the data stood when read."""

    pairs: list[dict[str, str]]
    eval_sets: list[RetrievalSet]
    counts: dict[str, int]
    watermark: int
    feedback_seq: int
    held_out: dict[str, int] = field(default_factory=dict)
    # Graded (need, capability) pairs outside the held-out needs, for fitting the ranking's weights.
    ranking_labels: dict[tuple[str, str], int] = field(default_factory=dict)


def held_out(key: str, fraction: float) -> bool:
    """Stable membership of a hold-out split: the same ids are held out on every run."""
    digest = hashlib.sha256(f"scenematch-holdout\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def _order_key(key: str) -> str:
    return hashlib.sha256(f"scenematch-holdout-order\0{key}".encode()).hexdigest()


def _read_jsonl(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh if line.strip())
    return out


def read_demo_labels(folders: tuple[Path, ...] = SEED_LABEL_DIRS) -> list[dict[str, Any]]:
    return [row for folder in folders for row in _read_jsonl(folder)]


def general_set(stored: set[str], held_ids: set[str], limit: int = GENERAL_RECORDS) -> RetrievalSet:
    """Seed records the deployment does not train on (not stored, or held out): title → own body
    among their bodies. Independent of the deployment, so an encoder that forgets how to read
    other records is caught even where the deployment's own probe cannot see it."""
    rows = [r for folder in SEED_RECORD_DIRS for sub in ("needs", "capabilities")
            for r in _read_jsonl(folder / sub)
            if r.get("description") and (r["id"] not in stored or r["id"] in held_ids)]
    rows = sorted(rows, key=lambda r: _order_key(f"general:{r['id']}"))[:limit]
    return RetrievalSet("general", [r["title"] for r in rows], [r["description"] for r in rows],
                        [{i: 1} for i in range(len(rows))],
                        "seed records not trained on: title → own description among theirs",
                        [r["id"] for r in rows])


def read_feedback(session: Session) -> tuple[dict[tuple[str, str], int], int]:
    """The latest feedback label per (need, capability) as a grade, and the last feedback id."""
    grades: dict[tuple[str, str], int] = {}
    last = 0
    for fb in session.scalars(select(Feedback).order_by(Feedback.id)):
        last = max(last, int(fb.id))
        if fb.label in FEEDBACK_GRADES:
            grades[(fb.need_id, fb.capability_id)] = FEEDBACK_GRADES[fb.label]
    return grades, last


def record_pairs(doc: IndexDoc, mode: str = "lead") -> list[dict[str, str]]:
    """A record's own pairs, by `mode`: "lead" (title → the first LEAD_CHARS characters of the
    body), "whole" (title → body), "passages" (title → each passage of a long body), "both" (the
    whole body first, then its passages), "none" (train on labelled pairs only)."""
    if not doc.body or mode == "none":
        return []
    if mode == "lead":
        return [{"anchor": doc.title, "positive": doc.body[:LEAD_CHARS]}]
    whole = [{"anchor": doc.title, "positive": doc.body}]
    if mode == "whole" or len(doc.passages) <= 1:
        return whole
    parts = [{"anchor": doc.title, "positive": p} for p in doc.passages if p != doc.title]
    return whole + parts if mode == "both" else parts


def labelled_pairs(grades: dict[tuple[str, str], int], needs: dict[str, IndexDoc],
                   caps: dict[str, IndexDoc], positive: int, negative: int) -> list[dict[str, str]]:
    """Need → capability positives, each with one of the need's hard negatives when it has any.

    Texts are the full record texts, as the index embeds them for matching by id.
    """
    by_need: dict[str, tuple[list[str], list[str]]] = {}
    for (need_id, cap_id), grade in sorted(grades.items()):
        if need_id not in needs or cap_id not in caps:
            continue
        pos, neg = by_need.setdefault(need_id, ([], []))
        if grade >= positive:
            pos.append(cap_id)
        elif grade <= negative:
            neg.append(cap_id)
    out = []
    for need_id, (pos, neg) in by_need.items():
        for i, cap_id in enumerate(pos):
            pair = {"anchor": needs[need_id].full_text, "positive": caps[cap_id].full_text}
            if neg:
                pair["negative"] = caps[neg[i % len(neg)]].full_text
            out.append(pair)
    return out


def _label_set(name: str, description: str, grades: dict[tuple[str, str], int], need_ids: list[str],
               needs: dict[str, IndexDoc], caps: dict[str, IndexDoc]) -> RetrievalSet:
    """Held-out needs (full text, query role) against every capability (full text)."""
    cap_ids = sorted(caps)
    row_of = {c: i for i, c in enumerate(cap_ids)}
    by_need: dict[str, dict[int, int]] = {}
    for (n, c), g in grades.items():
        if c in row_of:
            by_need.setdefault(n, {})[row_of[c]] = g
    queries, qrels, ids = [], [], []
    for need_id in need_ids:
        rel = by_need.get(need_id, {})
        if any(g > 0 for g in rel.values()):
            queries.append(needs[need_id].full_text)
            qrels.append(rel)
            ids.append(need_id)
    return RetrievalSet(name, queries, [caps[c].full_text for c in cap_ids], qrels, description, ids,
                        cap_ids)


def collect(sessions: sessionmaker[Session], tokenizer: Any, config: AdaptConfig,
            demo_labels: list[dict[str, Any]] | None = None) -> TrainingData:
    """Read the records, feedback and labels; split off the held-out data; sample training pairs."""
    with session_scope(sessions) as session:
        watermark = repository.last_change_seq(session)
        feedback, feedback_seq = read_feedback(session)
    needs = {d.id: d for d in builder.load_docs(sessions, NEED, tokenizer)}
    caps = {d.id: d for d in builder.load_docs(sessions, CAPABILITY, tokenizer)}
    # Labels and feedback always serve the evaluation; the switches only decide training.
    labels: dict[tuple[str, str], int] = {}
    for row in demo_labels if demo_labels is not None else read_demo_labels():
        if row["need_id"] in needs and row["capability_id"] in caps:
            labels[(row["need_id"], row["capability_id"])] = int(row["grade"])

    labelled_needs = {n for n, _ in labels} | {n for n, _ in feedback if n in needs}
    eval_needs = sorted(n for n in labelled_needs if held_out(n, config.label_holdout_fraction))
    docs = [*needs.values(), *caps.values()]
    # Held-out records are drawn from every record (a label-free deployment has nothing else);
    # a labelled pair with a held-out side is then not trained on either.
    candidates = sorted((d for d in docs if d.body and d.id not in set(eval_needs)),
                        key=lambda d: _order_key(f"{d.kind}:{d.id}"))
    n_hold = min(config.max_holdout_records, max(5, round(config.holdout_fraction * len(docs))))
    hold_docs = candidates[:n_hold]
    held_records = {d.id for d in hold_docs}
    excluded = {(NEED, n) for n in eval_needs} | {(d.kind, d.id) for d in hold_docs}

    held = set(eval_needs)

    def trainable(key: tuple[str, str]) -> bool:
        return key[0] not in held and key[0] not in held_records and key[1] not in held_records

    fit_labels = {k: g for k, g in labels.items() if trainable(k)}  # may fit the ranking's weights
    train_labels = fit_labels if config.use_demo_labels else {}
    train_feedback = {k: g for k, g in feedback.items() if config.use_feedback and trainable(k)}
    supervised = (labelled_pairs(train_labels, needs, caps, DEMO_POSITIVE, DEMO_NEGATIVE)
                  + labelled_pairs(train_feedback, needs, caps, POSITIVE_GRADE, 0))
    per_record = [record_pairs(d, config.record_pairs) for d in docs if (d.kind, d.id) not in excluded]
    pairs = sample_pairs(supervised, per_record, config.max_pairs, config.seed)

    eval_sets = [
        RetrievalSet("pairs", [d.title for d in hold_docs], [d.body for d in hold_docs],
                     [{i: 1} for i in range(len(hold_docs))],
                     "held-out records: title → own description among the held-out descriptions",
                     [f"{d.kind}:{d.id}" for d in hold_docs]),
        general_set(set(needs) | set(caps), held_records),
        _label_set("labels", "held-out seed labels: need → capabilities (graded 0/1/2)",
                   labels, eval_needs, needs, caps),
        _label_set("feedback", "held-out feedback: need → capabilities (relevant/contacted/deal)",
                   feedback, eval_needs, needs, caps),
    ]
    counts = {
        "needs": len(needs), "capabilities": len(caps),
        "record_pairs": sum(len(p) for p in per_record),
        "label_pairs": len(supervised),
        "hard_negatives": sum(1 for p in supervised if "negative" in p),
        "feedback_labels": len(feedback), "demo_labels": len(labels),
        "sampled": len(pairs),
    }
    held_counts = {"records": len(hold_docs), "labelled_needs": len(eval_needs),
                   "general_records": len(eval_sets[1]),
                   "label_queries": len(eval_sets[2]), "feedback_queries": len(eval_sets[3])}
    return TrainingData(pairs, [s for s in eval_sets if len(s)], counts, watermark, feedback_seq,
                        held_counts, {**fit_labels, **train_feedback})


def sample_pairs(supervised: list[dict[str, str]], per_record: list[list[dict[str, str]]],
                 max_pairs: int, seed: int) -> list[dict[str, str]]:
    """All labelled pairs (up to half the budget), then record pairs breadth-first.

    Breadth-first means one pair of every record before a second pair of any, so a
    bounded run still covers the whole corpus.
    """
    rng = random.Random(seed)
    labelled = list(supervised)
    rng.shuffle(labelled)
    chosen = labelled[:max_pairs // 2 if any(per_record) else max_pairs]
    groups = [list(g) for g in per_record if g]
    rng.shuffle(groups)
    depth = 0
    while len(chosen) < max_pairs and any(depth < len(g) for g in groups):
        for g in groups:
            if depth < len(g):
                chosen.append(g[depth])
                if len(chosen) >= max_pairs:
                    break
        depth += 1
    rng.shuffle(chosen)
    return chosen
