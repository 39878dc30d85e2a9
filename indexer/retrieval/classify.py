"""Which of the policy's 20 domains a text belongs to.

Four scores per domain, from three kinds of evidence:
  knn        similarity-weighted votes of the nearest labelled records (domain given by a
             client, never a predicted one)
  centroid   cosine to the mean vector of each domain's labelled records
  prototype  cosine to the domain's prototype: the mean embedding of its name, description
             and key terms from the taxonomy
  terms      the taxonomy's key terms and synonyms found among the text's tokens
Combined as P(domain) = softmax(Σ weight · feature), weights fitted by
benchmarks/classify.py, so a score reads as a probability (the 20 sum to 1).
Description similarity alone was right about half the time; labelled examples and key
terms are what lift it (docs/quality.md). Besides the deployment's own records with
client-given domains, the seed corpora's records serve as examples (indexer/retrieval/reference.py):
most clients send no domains, and then they are the only examples there are.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from indexer.retrieval.documents import KINDS
from indexer.retrieval.embedding import Encoder
from indexer.retrieval.reference import REFERENCE
from indexer.retrieval.text import normalize
from models.database import session_scope
from models.repository import MODELS
from models.taxonomy import Taxonomy, default_taxonomy

log = logging.getLogger("scenematch.classify")

FEATURES = ("knn", "centroid", "prototype", "terms")
# Fitted by `python -m benchmarks.classify` on the demo corpus (cross-fitted, so every
# record was scored by a classifier that had not seen it); the cosines differ by hundredths
# between domains, hence their large weights.
WEIGHTS = {"knn": 1.03, "centroid": 91.9, "prototype": 43.45, "terms": 0.76}
# Used while there is no labelled example at all (an empty database).
ZERO_SHOT_WEIGHTS = {"knn": 0.0, "centroid": 0.0, "prototype": 196.13, "terms": 1.35}
KNN_K = 20
KNN_TAU = 0.02  # similarity gap that divides a neighbour's vote by e
KNN_FLOOR = 0.01  # keeps log(vote share) finite for domains no neighbour has
KNN_CHUNK = 256
# A capability gets every further domain whose probability reaches this (besides the top one).
EXTRA_DOMAIN_THRESHOLD = 0.2  # best mean F1 of domain sets
MAX_DOMAINS = 3
TOP_K = 3


@dataclass
class ExamplePart:
    """Labelled vectors, used in place (a segment's matrix is never copied).

    Rows whose label row is all False (no domain, a predicted domain, a deleted record)
    are not examples.
    """

    vectors: np.ndarray  # (n, d) unit rows
    labels: np.ndarray  # (n, n_domains) bool

    def __post_init__(self) -> None:
        self.usable = self.labels.any(axis=1) if self.labels.size else np.zeros(len(self.labels), bool)
        self.count = int(self.usable.sum())


def examples_from_segment(segment: Any, hidden_rows: Iterable[int] = (),
                          predicted_ids: Iterable[str] = ()) -> ExamplePart:
    """A segment's rows with client-given domains, minus hidden and predicted rows."""
    labels = np.array(segment.domain_mask, dtype=bool, copy=True)
    drop = [int(r) for r in hidden_rows]
    drop += [segment.row_of[i] for i in predicted_ids if i in segment.row_of]
    if drop and len(labels):
        labels[np.asarray(drop, dtype=np.int64)] = False
    return ExamplePart(segment.doc_vectors, labels)


def examples_from_docs(docs: Sequence[Any], vectors: np.ndarray, codes: Sequence[str]) -> ExamplePart:
    """Documents being indexed whose domains came from the client."""
    pos = {c: j for j, c in enumerate(codes)}
    labels = np.zeros((len(docs), len(codes)), dtype=bool)
    for i, doc in enumerate(docs):
        if not getattr(doc, "domain_predicted", False):
            for code in doc.domains:
                if code in pos:
                    labels[i, pos[code]] = True
    return ExamplePart(vectors, labels)


_prototype_lock = threading.Lock()
_prototypes: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}


def prototype_vectors(encoder: Encoder, taxonomy: Taxonomy) -> np.ndarray:
    """(n_domains, d) unit prototypes, embedded once per encoder and process.

    Query-role embeddings of the name, the description and each key term, averaged:
    measured better than one embedding of all of them joined (0.68 vs 0.62 top-1).
    """
    key = (encoder.name, tuple(taxonomy.domains))
    with _prototype_lock:
        if key not in _prototypes:
            rows = []
            for domain in taxonomy.domains.values():
                texts = [domain.name, domain.description, *domain.key_terms]
                mean = encoder.encode_queries(texts).mean(axis=0)
                rows.append(mean / np.linalg.norm(mean))
            _prototypes[key] = np.stack(rows).astype(np.float32)
        return _prototypes[key]


def term_table(taxonomy: Taxonomy) -> dict[str, list[int]]:
    """Normalized key term or synonym → the domains (positions) that list it."""
    table: dict[str, set[int]] = {}
    for j, domain in enumerate(taxonomy.domains.values()):
        terms = {normalize(t) for t in domain.key_terms}
        for head, variants in domain.synonyms.items():
            terms.add(normalize(head))
            terms.update(normalize(v) for v in variants)
        for term in terms:
            table.setdefault(term, set()).add(j)
    return {t: sorted(js) for t, js in table.items()}


def term_scores(token_lists: Sequence[Sequence[str]], table: dict[str, list[int]],
                n_domains: int) -> np.ndarray:
    """Distinct taxonomy terms per domain; a term shared by several domains is split among them."""
    out = np.zeros((len(token_lists), n_domains), dtype=np.float64)
    for i, tokens in enumerate(token_lists):
        for term in set(tokens):
            owners = table.get(term)
            if owners:
                out[i, owners] += 1.0 / len(owners)
    return out


class DomainClassifier:
    """Probabilities over the taxonomy's domains for texts and their vectors."""

    def __init__(self, encoder: Encoder, tokenizer: Any, taxonomy: Taxonomy,
                 examples: ExamplePart | Sequence[ExamplePart] | tuple[np.ndarray, np.ndarray] = (),
                 weights: dict[str, float] | None = None):
        self.encoder, self.tokenizer, self.taxonomy = encoder, tokenizer, taxonomy
        self.codes = list(taxonomy.domains)
        self.parts = _as_parts(examples)
        self.n_examples = sum(p.count for p in self.parts)
        self.weights = dict(weights or (WEIGHTS if self.n_examples else ZERO_SHOT_WEIGHTS))
        self.prototypes = prototype_vectors(encoder, taxonomy)
        self.terms = term_table(taxonomy)
        self.centroids, self.has_centroid = self._centroids()

    def _centroids(self) -> tuple[np.ndarray, np.ndarray]:
        dim = self.prototypes.shape[1]
        sums = np.zeros((len(self.codes), dim), dtype=np.float64)
        for part in self.parts:
            if part.count:
                # (d, n) @ (n, domains): the other order was 10-40x slower with this BLAS.
                sums += (part.vectors.T @ part.labels.astype(np.float32)).T
        norms = np.linalg.norm(sums, axis=1)
        present = norms > 0
        sums[present] /= norms[present, None]
        return sums.astype(np.float32), present

    # ---- components -----------------------------------------------------------------
    def knn_votes(self, vectors: np.ndarray) -> np.ndarray:
        """Similarity-weighted share of the nearest examples' votes for each domain."""
        if not self.n_examples or not len(vectors):
            return np.zeros((len(vectors), len(self.codes)))
        # In chunks: a bulk upload against a large corpus would need a huge similarity matrix.
        return np.vstack([self._knn_chunk(vectors[i:i + KNN_CHUNK])
                          for i in range(0, len(vectors), KNN_CHUNK)])

    def _knn_chunk(self, vectors: np.ndarray) -> np.ndarray:
        sims, labels = [], []
        for part in self.parts:
            if not part.count:
                continue
            s = vectors @ part.vectors.T
            s[:, ~part.usable] = -np.inf
            k = min(KNN_K, part.count)
            top = np.argpartition(-s, k - 1, axis=1)[:, :k]
            sims.append(np.take_along_axis(s, top, axis=1))
            labels.append(part.labels[top])  # (m, k, n_domains)
        s = np.concatenate(sims, axis=1)
        lab = np.concatenate(labels, axis=1)
        k = min(KNN_K, s.shape[1])
        best = np.argsort(-s, axis=1)[:, :k]
        s = np.take_along_axis(s, best, axis=1)
        lab = np.take_along_axis(lab, best[:, :, None], axis=1)
        w = np.exp((s - s[:, :1]) / KNN_TAU)
        return np.einsum("mk,mkd->md", w, lab.astype(np.float64)) / w.sum(axis=1, keepdims=True)

    def centroid_similarity(self, vectors: np.ndarray) -> np.ndarray:
        sims = (vectors @ self.centroids.T).astype(np.float64)
        if self.has_centroid.any() and not self.has_centroid.all():
            # A domain without examples gets the row's average: no evidence either way.
            fill = sims[:, self.has_centroid].mean(axis=1, keepdims=True)
            sims[:, ~self.has_centroid] = fill
        return sims

    def components(self, vectors: np.ndarray, texts: Sequence[str] | None = None,
                   tokens: Sequence[Sequence[str]] | None = None) -> dict[str, np.ndarray]:
        """Each component's raw score per domain, (m, n_domains) each."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.prototypes.shape[1])
        if tokens is None:
            tokens = [self.tokenizer.tokens(t) for t in (texts or [""] * len(vectors))]
        return {
            "knn": self.knn_votes(vectors),
            "centroid": self.centroid_similarity(vectors),
            "prototype": (vectors @ self.prototypes.T).astype(np.float64),
            "terms": term_scores(tokens, self.terms, len(self.codes)),
        }

    def probabilities(self, vectors: np.ndarray, texts: Sequence[str] | None = None,
                      tokens: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        return combine(self.components(vectors, texts, tokens), self.weights)

    # ---- predictions ----------------------------------------------------------------
    def ranked(self, probs: np.ndarray, top_k: int = TOP_K) -> list[list[tuple[str, float]]]:
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        return [[(self.codes[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]

    def predict_vectors(self, vectors: np.ndarray, texts: Sequence[str] | None = None, *,
                        tokens: Sequence[Sequence[str]] | None = None,
                        top_k: int = TOP_K) -> list[list[tuple[str, float]]]:
        """Top-k (code, probability) for records already embedded (passage role)."""
        return self.ranked(self.probabilities(vectors, texts, tokens), top_k)

    def predict_text(self, text: str, top_k: int = TOP_K) -> list[tuple[str, float]]:
        # Passage role, like the labelled examples: measured equal or better than query role.
        # Free text skips the embedding cache (as search does): it is asked once, and callers'
        # texts have no business being stored.
        vector = getattr(self.encoder, "inner", self.encoder).encode_passages([text])
        return self.predict_vectors(vector, [text], top_k=top_k)[0]


def combine(components: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """softmax(Σ weight · feature) per row; vote shares enter as logs, term counts as log1p."""
    logits = None
    for name in FEATURES:
        w = weights.get(name, 0.0)
        if not w:
            continue
        term = w * feature(name, components[name])
        logits = term if logits is None else logits + term
    if logits is None:
        logits = np.zeros_like(components["prototype"])
    logits = logits - logits.max(axis=1, keepdims=True)
    expd = np.exp(logits)
    return expd / expd.sum(axis=1, keepdims=True)


def feature(name: str, raw: np.ndarray) -> np.ndarray:
    if name == "knn":
        return np.log(raw + KNN_FLOOR)
    if name == "terms":
        return np.log1p(raw)
    return raw


def chosen_domains(kind: str, ranked: list[tuple[str, float]],
                   threshold: float = EXTRA_DOMAIN_THRESHOLD) -> list[str]:
    """A need gets its top domain; a capability (or a scenario) also any other domain with enough probability."""
    if not ranked:
        return []
    if kind == "need":
        return [ranked[0][0]]
    extra = [code for code, score in ranked[1:MAX_DOMAINS] if score >= threshold]
    return [ranked[0][0], *extra]


def _as_parts(examples: Any) -> list[ExamplePart]:
    if isinstance(examples, ExamplePart):
        return [examples]
    if isinstance(examples, tuple) and len(examples) == 2 and isinstance(examples[0], np.ndarray):
        return [ExamplePart(np.asarray(examples[0], np.float32), np.asarray(examples[1], bool))]
    return [p for p in examples if len(p.labels)]


# ---- classifying records at indexing time ---------------------------------------------
@dataclass
class Prediction:
    kind: str
    record_id: str
    content_hash: str
    ranked: list[tuple[str, float]]
    domains: list[str]


def needs_prediction(doc: Any, redo_predicted: bool = False) -> bool:
    """No client-given domains: none at all, or (redo_predicted) only predicted ones."""
    return not doc.domains or (redo_predicted and bool(getattr(doc, "domain_predicted", False)))


def predict_missing(classifier: DomainClassifier, kind: str, docs: Sequence[Any], vectors: np.ndarray,
                    tokens: Sequence[Sequence[str]] | None = None,
                    redo_predicted: bool = False) -> list[Prediction]:
    """Predict the domains of the documents that have none, setting them on the documents."""
    rows = [i for i, d in enumerate(docs) if needs_prediction(d, redo_predicted)]
    if not rows:
        return []
    ranked = classifier.predict_vectors(
        vectors[rows], [docs[i].full_text for i in rows],
        tokens=[tokens[i] for i in rows] if tokens is not None else None)
    out = []
    for i, top in zip(rows, ranked):
        doc = docs[i]
        doc.domains, doc.domain_predicted = chosen_domains(kind, top), True
        out.append(Prediction(kind, doc.id, doc.content_hash, top, doc.domains))
    return out


def store_predictions(sessions: sessionmaker[Session], predictions: Sequence[Prediction],
                      taxonomy: Taxonomy) -> None:
    """Write predicted domains onto the rows that still hold the content they were made for.

    No change-log row is written (a prediction is not a client change, and logging one
    would make the indexer refresh forever) and content_hash is left alone: it hashes the
    client's own fields, so re-sending the same record still counts as unchanged.
    """
    for kind, model in MODELS.items():
        params = [{"b_id": p.record_id, "b_hash": p.content_hash,
                   "b_domain": p.domains[0] if kind == "need" else list(p.domains),
                   "b_scores": [{"code": c, "name": taxonomy.name(c), "score": round(s, 4)}
                                for c, s in p.ranked[:TOP_K]]}
                  for p in predictions if p.kind == kind and p.content_hash]
        if not params:
            continue
        table = model.__table__
        target = table.c.domain if kind == "need" else table.c.domains
        stmt = (update(table)
                .where(table.c.id == bindparam("b_id"), table.c.content_hash == bindparam("b_hash"))
                .values({target: bindparam("b_domain", type_=target.type),
                         table.c.domain_predicted: True,
                         table.c.domain_scores: bindparam("b_scores", type_=table.c.domain_scores.type),
                         table.c.updated_at: table.c.updated_at}))  # not a client update
        with session_scope(sessions) as session:
            session.execute(stmt, params)


def predicted_ids(sessions: sessionmaker[Session]) -> dict[str, set[str]]:
    """Ids of the records whose domains were predicted (never used as examples)."""
    with session_scope(sessions) as session:
        return {kind: set(session.scalars(select(model.id).where(model.domain_predicted.is_(True))))
                for kind, model in MODELS.items()}


def segment_examples(sessions: sessionmaker[Session], segments: Sequence[tuple[str, Any, Any]]
                     ) -> list[ExamplePart]:
    """Examples from (kind, segment, hidden rows) triples, predicted records left out."""
    predicted = predicted_ids(sessions)
    return [examples_from_segment(seg, hidden if hidden is not None else (), predicted[kind])
            for kind, seg, hidden in segments]


def reference_part(encoder: Encoder, codes: Sequence[str], exclude: Iterable[str] = (),
                   wait: bool = True) -> list[ExamplePart]:
    """The seed records as examples (none while they are still being embedded and not `wait`)."""
    found = REFERENCE.labelled(encoder, codes, exclude, wait=wait)
    return [] if found is None else [ExamplePart(*found)]


def classify_unlabelled(embedded: dict[str, Any], encoder: Encoder, tokenizer: Any,
                        sessions: sessionmaker[Session],
                        more_examples: Callable[[], Sequence[ExamplePart]] | None = None,
                        redo_predicted: bool = False, wait_for_reference: bool = True) -> int:
    """Give every document without domains its predicted ones, in place, and store them.

    `embedded` maps a kind to its EmbeddedDocs (docs, doc_vectors, tokens); its documents
    with client-given domains are examples, with `more_examples()` (the served segments
    during a refresh). `redo_predicted`: documents whose domains were predicted before are
    predicted again. The seed records are examples too, except those with the ids being classified;
    `wait_for_reference`: embed them now if they are not yet (a full build), else go without
    them this time (a refresh must not stall). Returns how many documents were classified; a
    failure is logged and leaves the documents unclassified rather than stopping the indexing.
    """
    if not any(needs_prediction(d, redo_predicted) for e in embedded.values() for d in e.docs):
        return 0
    try:
        taxonomy = default_taxonomy()
        codes = list(taxonomy.domains)
        parts = [examples_from_docs(e.docs, e.doc_vectors, codes) for e in embedded.values()]
        parts += list(more_examples() if more_examples else ())
        own_ids = {d.id for e in embedded.values() for d in e.docs}
        parts += reference_part(encoder, codes, own_ids, wait=wait_for_reference)
        classifier = DomainClassifier(encoder, tokenizer, taxonomy, parts)
        predictions = [p for kind, e in embedded.items()
                       for p in predict_missing(classifier, kind, e.docs, e.doc_vectors, e.tokens, redo_predicted)]
        store_predictions(sessions, predictions, taxonomy)
        return len(predictions)
    except Exception:
        log.exception("domain classification failed; records stay without a domain for now")
        return 0


class SnapshotClassifier:
    """The classifier of the served snapshot, rebuilt lazily after each swap (no embedding)."""

    def __init__(self, engine: Any, taxonomy: Taxonomy | None = None):
        self.engine, self.taxonomy = engine, taxonomy or default_taxonomy()
        self._lock = threading.Lock()
        self._for: Any = None
        self._classifier: DomainClassifier | None = None
        self._with_reference = False

    def get(self) -> DomainClassifier:
        snap = self.engine.snapshot
        if snap is None:
            raise RuntimeError("no index is loaded")
        with self._lock:
            encoder = getattr(snap, "encoder", None) or self.engine.encoder
            codes = list(self.taxonomy.domains)
            # Rebuilt after a swap, and once the reference examples are ready (they are embedded
            # in the background, so the first request after a start is not held up by them).
            with_reference = REFERENCE.ready(encoder, codes)
            if self._for is not snap or self._classifier is None or with_reference != self._with_reference:
                triples = [(k, snap.base[k], snap.tombstones[k]) for k in KINDS]
                triples += [(k, snap.delta[k], None) for k in KINDS]
                parts = segment_examples(self.engine.sessions, triples)
                parts += reference_part(encoder, codes, wait=False)
                self._classifier = DomainClassifier(encoder, self.engine.tokenizer, self.taxonomy, parts)
                self._for, self._with_reference = snap, with_reference
            return self._classifier
