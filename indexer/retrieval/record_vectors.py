"""Which texts of a record are encoded, and how its vectors are made from them.

The encoder is nearly all of a build's time (docs/benchmarks.md), so every record is encoded as
few times as its ranking quality allows:

* a text that fits one passage is encoded once and serves as the whole text and the passage;
* a longer text is encoded whole and as its titled passages; with ``whole_from_passages`` its
  whole-text vector would be the normalised mean of those passage vectors instead of one more
  (the longest) encode;
* a need is also the query when it is matched by id; ``need_query_role`` says which needs get a
  vector of their own in e5's query role ("all", "single": only needs that fit one passage,
  "none": none, the whole-text vector stands in).

The default plan is the one measured to hold nDCG@10 on the realistic corpus and CSL dev
(``python -m benchmarks.encodes``, docs/benchmarks.md "Encodes per record"): the whole text stays
encoded (its passage mean lost 0.019-0.042 capability → need on the realistic corpus), and only
needs that fit one passage get the query role (long needs' own query-role vector measured no
better than their whole-text vector: +0.0016 need → capability without it, interval across 0;
short ones, such as CSL titles, rank better with it: docs/quality.md).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from indexer.retrieval.documents import NEED, IndexDoc, passage_texts_for_embedding
from indexer.retrieval.embedding import Encoder

Progress = Callable[[int, int], None]
NEED_QUERY_ROLES = ("all", "single", "none")


@dataclass(frozen=True)
class EncodePlan:
    whole_from_passages: bool = False
    need_query_role: str = "single"

    def __post_init__(self) -> None:
        if self.need_query_role not in NEED_QUERY_ROLES:
            raise ValueError(f"need_query_role must be one of {NEED_QUERY_ROLES}, not {self.need_query_role!r}")

    @property
    def label(self) -> str:
        whole = "whole=passage mean" if self.whole_from_passages else "whole encoded"
        return f"{whole}, need query role: {self.need_query_role}"


# What a build uses unless told otherwise (benchmarks pass their own plans).
DEFAULT_PLAN = EncodePlan()


@dataclass
class RecordVectors:
    doc_vectors: np.ndarray  # (n, d) whole-text vectors, passage role
    query_vectors: np.ndarray | None  # (n, d) needs only: the vector a need searches with
    passage_vectors: np.ndarray  # (sum of passages, d)
    passage_offsets: np.ndarray  # (n + 1,) rows of each record's passages
    texts_encoded: int  # encoder inputs (cache hits included), the plan's cost


def unit_mean(vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of unit vectors: the direction they share."""
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def encode_records(docs: list[IndexDoc], encoder: Encoder, plan: EncodePlan = DEFAULT_PLAN,
                   progress: Progress | None = None) -> RecordVectors:
    """Every record's vectors with as few encoder inputs as `plan` allows."""
    dim = encoder.dim
    # One passage-role call for everything, so the encoder sorts all texts by length together
    # (padding dominates a CPU batch of mixed lengths).
    passage_inputs: list[str] = []
    spans: list[tuple[int, int]] = []  # each record's rows of passage_inputs (its passages)
    whole_rows: list[int] = []  # each record's whole-text row in passage_inputs, or -1
    for d in docs:
        start = len(passage_inputs)
        if len(d.passages) > 1:
            passage_inputs.extend(passage_texts_for_embedding(d))
            spans.append((start, len(passage_inputs)))
            if plan.whole_from_passages:
                whole_rows.append(-1)
            else:
                whole_rows.append(len(passage_inputs))
                passage_inputs.append(d.full_text)
        else:  # the single passage is the whole text
            passage_inputs.append(d.full_text)
            spans.append((start, start + 1))
            whole_rows.append(start)
    query_rows = _query_role_rows(docs, plan)
    total = len(passage_inputs) + len(query_rows)

    def step(base: int) -> Progress:
        return lambda done, _t: progress(base + done, total) if progress else None

    encoded = encoder.encode_passages(passage_inputs, progress=step(0)) if passage_inputs \
        else np.zeros((0, dim), np.float32)
    query_encoded = encoder.encode_queries([docs[i].full_text for i in query_rows]) if query_rows \
        else np.zeros((0, dim), np.float32)

    doc_vectors = np.zeros((len(docs), dim), np.float32)
    pieces, offsets = [], [0]
    for i, ((a, b), w) in enumerate(zip(spans, whole_rows)):
        passages = encoded[a:b]
        doc_vectors[i] = encoded[w] if w >= 0 else unit_mean(passages)
        pieces.append(passages)
        offsets.append(offsets[-1] + len(passages))
    query_vectors = None  # the segment then searches with the whole-text vectors
    if query_rows:
        query_vectors = doc_vectors.copy()
        query_vectors[query_rows] = query_encoded
    if progress:
        progress(total, total)
    return RecordVectors(doc_vectors, query_vectors,
                         np.vstack(pieces) if pieces else np.zeros((0, dim), np.float32),
                         np.array(offsets, dtype=np.int64), total)


def _query_role_rows(docs: list[IndexDoc], plan: EncodePlan) -> list[int]:
    if not docs or docs[0].kind != NEED or plan.need_query_role == "none":
        return []
    if plan.need_query_role == "all":
        return list(range(len(docs)))
    return [i for i, d in enumerate(docs) if len(d.passages) <= 1]


__all__ = ["DEFAULT_PLAN", "EncodePlan", "RecordVectors", "encode_records", "unit_mean"]
