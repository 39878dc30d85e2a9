"""Turning records into segments and index versions (full build, delta, fold).

Embedding dominates the cost of indexing, so documents are tokenized on a second
thread while the encoder runs, and every text goes through the embedding cache.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from indexer.retrieval import classify, keyterms
from indexer.retrieval.documents import KINDS, IndexDoc, doc_from_row
from indexer.retrieval.embedding import Encoder
from indexer.retrieval.record_vectors import DEFAULT_PLAN, EncodePlan, encode_records
from indexer.retrieval.segment import Segment
from indexer.retrieval.versions import activate, index_root, new_version_name, write_version
from models import repository
from models.database import session_scope

Progress = Callable[[float, str], None]
SEGMENT_DIRS = {"need": "needs", "capability": "capabilities", "scenario": "scenarios"}


@dataclass
class EmbeddedDocs:
    """Documents with their vectors and tokens, ready to become a segment."""

    docs: list[IndexDoc]
    doc_vectors: np.ndarray
    query_vectors: np.ndarray | None  # needs only (see Segment.query_vectors)
    passage_vectors: np.ndarray
    passage_offsets: np.ndarray
    tokens: list[list[str]]
    timings: dict[str, float] = field(default_factory=dict)
    key_terms: list[list[tuple[str, float]]] | None = None  # per doc, for explanations


def lexical_text(doc: IndexDoc) -> str:
    # The title is repeated: it states the subject, the body mostly elaborates.
    return f"{doc.title} {doc.title} {doc.body}"


def embed_docs(docs: list[IndexDoc], encoder: Encoder, tokenizer: Any,
               progress: Callable[[int, int], None] | None = None,
               plan: EncodePlan = DEFAULT_PLAN) -> EmbeddedDocs:
    """Document and passage vectors and BM25 tokens for `docs` (and query vectors for needs);
    which texts are encoded: indexer/retrieval/record_vectors.py."""
    tokens: list[list[str]] = []
    key_terms: list[list[tuple[str, float]]] = []
    token_time = [0.0]

    def tokenize() -> None:
        # jieba runs here, beside the encoder (torch releases the GIL while it computes).
        t0 = time.perf_counter()
        tokens.extend(tokenizer.tokens(lexical_text(d)) for d in docs)
        key_terms.extend(keyterms.extract(tokenizer, d.key_text or d.full_text) for d in docs)
        token_time[0] = time.perf_counter() - t0

    worker = threading.Thread(target=tokenize, name="tokenize")
    worker.start()
    t0 = time.perf_counter()
    vectors = encode_records(docs, encoder, plan, progress)
    encode_time = time.perf_counter() - t0
    worker.join()
    return EmbeddedDocs(docs, vectors.doc_vectors, vectors.query_vectors, vectors.passage_vectors,
                        vectors.passage_offsets, tokens,
                        {"encode_s": encode_time, "tokenize_s": token_time[0],
                         "texts_encoded": vectors.texts_encoded}, key_terms)


def segment_from(kind: str, embedded: EmbeddedDocs, domain_codes: list[str],
                 reference: Segment | None = None, dense_kind: str = "auto") -> Segment:
    return Segment.build(
        kind, embedded.docs, domain_codes, doc_vectors=embedded.doc_vectors,
        query_vectors=embedded.query_vectors, passage_vectors=embedded.passage_vectors,
        passage_offsets=embedded.passage_offsets, tokens=embedded.tokens, reference=reference,
        dense_kind=dense_kind, key_terms=embedded.key_terms)


def load_docs(sessions: sessionmaker[Session], kind: str, tokenizer: Any,
              ids: list[str] | None = None) -> list[IndexDoc]:
    with session_scope(sessions) as session:
        if ids is None:
            rows = repository.iter_all(session, kind)
            return [doc_from_row(kind, r, tokenizer) for r in rows]
        found = repository.get_many(session, kind, ids)
        return [doc_from_row(kind, found[i], tokenizer) for i in ids if i in found]


def build_full_version(data_dir: Path, sessions: sessionmaker[Session], encoder: Encoder,
                       tokenizer: Any, domain_codes: list[str], *, progress: Progress | None = None,
                       dense_kind: str = "auto", extra_manifest: dict[str, Any] | None = None,
                       activate_version: bool = True,
                       plan: EncodePlan = DEFAULT_PLAN) -> tuple[str, dict[str, Segment]]:
    """Build every segment from the database and write (and activate) a new version."""
    started = time.perf_counter()
    with session_scope(sessions) as session:
        # Read the watermark first: changes after it are picked up by the next refresh.
        watermark = repository.last_change_seq(session)
        counts = {k: repository.count(session, k) for k in KINDS}
    total = max(1, sum(counts.values()))
    segments: dict[str, Segment] = {}
    timings: dict[str, float] = {}
    done_before = 0
    embedded_by_kind: dict[str, EmbeddedDocs] = {}
    for kind in KINDS:
        docs = load_docs(sessions, kind, tokenizer)

        def report(d: int, t: int, base: int = done_before, n: int = len(docs)) -> None:
            if progress and t:
                progress(0.95 * (base + n * d / t) / total, f"embedding {SEGMENT_DIRS[kind]}")

        embedded = embed_docs(docs, encoder, tokenizer, report, plan)
        for key, value in embedded.timings.items():
            timings[f"{kind}_{key}"] = round(value, 3)
        embedded_by_kind[kind] = embedded
        done_before += len(docs)
    # Records stored without a domain get a predicted one; both kinds' labelled records are examples.
    # Earlier predictions are made again: they came from an older model (an adapted encoder may
    # have been activated or rolled back since) and fewer examples.
    classify.classify_unlabelled(embedded_by_kind, encoder, tokenizer, sessions, redo_predicted=True)
    for kind in KINDS:
        segments[kind] = segment_from(kind, embedded_by_kind[kind], domain_codes,
                                      dense_kind=dense_kind)
    if progress:
        progress(0.96, "writing index files")
    version = new_version_name()
    root = index_root(data_dir)
    manifest = make_manifest(segments, encoder, watermark, "full", time.perf_counter() - started,
                             timings, extra_manifest)
    write_version(root, version, lambda folder: save_segments(folder, segments, manifest))
    if activate_version:
        activate(root, version)
    if progress:
        progress(1.0, "done")
    return version, segments


def fold_version(data_dir: Path, base: dict[str, Segment], keep: dict[str, np.ndarray],
                 delta: dict[str, Segment], encoder: Encoder, watermark: int,
                 extra_manifest: dict[str, Any] | None = None,
                 dense_kind: str = "auto") -> tuple[str, dict[str, Segment]]:
    """Write a version made of the active base minus tombstones plus the delta (no embedding)."""
    started = time.perf_counter()
    segments = {k: Segment.merge(base[k], keep[k], delta[k], dense_kind=dense_kind) for k in KINDS}
    manifest = make_manifest(segments, encoder, watermark, "incremental",
                             time.perf_counter() - started, {}, extra_manifest)
    version = new_version_name()
    root = index_root(data_dir)
    write_version(root, version, lambda folder: save_segments(folder, segments, manifest))
    activate(root, version)
    return version, segments


def make_manifest(segments: dict[str, Segment], encoder: Encoder, watermark: int, mode: str,
                  seconds: float, timings: dict[str, float],
                  extra: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "format": 1,
        "mode": mode,
        "model": encoder.name,
        "dim": encoder.dim,
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "build_seconds": round(seconds, 3),
        "watermark": watermark,
        "counts": {SEGMENT_DIRS[k]: len(s) for k, s in segments.items()},
        "passages": {SEGMENT_DIRS[k]: len(s.passages) for k, s in segments.items()},
        "dense": {SEGMENT_DIRS[k]: s.dense.params() for k, s in segments.items()},
        "lexical": {"type": "bm25", "tokenizer": "jieba+taxonomy"},
        "timings": timings,
        **(extra or {}),
    }


def save_segments(folder: Path, segments: dict[str, Segment], manifest: dict[str, Any]) -> dict[str, Any]:
    for kind, seg in segments.items():
        seg.save(folder / SEGMENT_DIRS[kind])
    return manifest


def load_segments(folder: Path) -> dict[str, Segment]:
    """Every kind's segment; a kind a version was written without (scenarios, before they
    existed) is empty, and its records arrive through the delta like any change."""
    segments = {kind: Segment.load(folder / SEGMENT_DIRS[kind]) for kind in KINDS
                if (folder / SEGMENT_DIRS[kind] / "records.json").exists()}
    dim = next((s.doc_vectors.shape[1] for s in segments.values() if s.doc_vectors.ndim == 2), 384)
    empty = np.zeros((0, dim), np.float32)
    for kind in KINDS:
        if kind not in segments:
            segments[kind] = Segment.build(kind, [], next(iter(segments.values())).domain_codes,
                                           doc_vectors=empty, passage_vectors=empty,
                                           passage_offsets=np.zeros(1, np.int64), tokens=[], key_terms=[])
    return segments
