"""Hybrid ranking: candidates from the dense and lexical indexes, one calibrated score.

Each candidate gets a few signals:
  dense    cosine of the query vector and the record's whole-text vector
  passage  best cosine of the query vector and any passage of the record
  lexical  BM25 over jieba tokens, divided by the score of the query against itself
  domain   1 when the two sides share a client-given domain of the taxonomy, else 0; unknown
           when a side has no client-given domain (none sent: predicted or pending)
The first three are standardized among the query's candidates (z-scores: minus their mean,
divided by their standard deviation; the value as measured is kept as `<name>_raw`). Raw
cosines live in a band whose place and width depend on the encoder (the base e5's sit near
0.89 ± 0.02, an adapted one's near 0.35 ± 0.10), so weights fitted on raw cosines do not
carry over to an adapted encoder; fitted on z-scores they do (docs/quality.md, "Fusion").
And one piece of evidence, computed and shown for every candidate:
  case     the best cosine of the query with a scenario the capability (or its organization)
           delivered (indexer/retrieval/cases.py), 0 without one; it counts in the score only
           where the weights give it a weight (docs/quality.md, "Case evidence")
The score is a logistic model of those signals:
  logit = bias + Σ weight_i · signal_i,  score = 1 / (1 + e^-logit)
fitted on graded labels (`scenematch tune`), so a score reads as the estimated
probability that a civil servant would judge the match relevant, given how it stands out
among the query's candidates. A pair whose domain agreement is unknown is scored by the `untagged` model: the
other signals fitted without the domain one, so an untagged record is neither pushed down
as if its domain differed nor up as if it agreed (docs/quality.md, "Untagged records").
The weights ship in ranking_weights.json beside this file; an adapted encoder version
carries its own, fitted to its scores (RankingModels, indexer/adaptation/weights.py).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from indexer.retrieval import cases
from indexer.retrieval.engine import Snapshot
from indexer.retrieval.segment import Filters, Segment
from models import model_versions as mv

WEIGHTS_FILE = Path(__file__).with_name("ranking_weights.json")
SIGNALS = ("dense", "passage", "lexical", "domain")
STANDARDIZED = ("dense", "passage", "lexical")  # z-scored among each query's candidates
# What the fitted weights expect to multiply; weights stored without it (older versions, fitted
# on raw cosines) are not applied to z-scores: the shipped ones serve instead.
FEATURES = "per-query z-scores v1"
EVIDENCE = ("case",)  # computed and shown for every candidate; scored only where weighted
SHOWN = SIGNALS + EVIDENCE
DENSE_CANDIDATES = 100
LEXICAL_CANDIDATES = 50


@dataclass
class RankingModel:
    weights: dict[str, float]
    bias: float
    info: dict[str, Any] = field(default_factory=dict)
    # For pairs whose domain agreement is unknown; None: they count as not agreeing.
    untagged: "RankingModel | None" = None

    def for_domain(self, known: bool) -> "RankingModel":
        """The model that scores a pair whose domain agreement is (or is not) known."""
        return self if known or self.untagged is None else self.untagged

    @classmethod
    def load(cls, path: Path = WEIGHTS_FILE) -> "RankingModel":
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RankingModel":
        # Floats even where the file says 1 or 0: explanations show them as the API's float fields.
        return cls(weights={k: float(v) for k, v in data["weights"].items()}, bias=float(data["bias"]),
                   info=data.get("info", {}),
                   untagged=cls.from_dict(data["untagged"]) if data.get("untagged") else None)

    def to_dict(self) -> dict[str, Any]:
        out = {"weights": self.weights, "bias": self.bias, "info": self.info}
        if self.untagged is not None:
            out["untagged"] = self.untagged.to_dict()
        return out

    def save(self, path: Path = WEIGHTS_FILE) -> None:
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(features.values())))
        out = np.full(n, self.bias, dtype=np.float64)
        for name, w in self.weights.items():
            out += w * features[name]
        return out


class RankingModels:
    """The weights to rank each encoder's index with: weights learned from outcomes for it (the
    active version under DATA_DIR/ranking, indexer/adaptation/outcomes.py), else an adapted
    version's own, else the default.

    An adaptation stores the weights it was judged with in its version's manifest ("ranking"),
    because the shipped weights were fitted to the base model's score scale. Versions are
    immutable once committed, so each model name is looked up on disk once; `reload()` forgets
    them when a learned version is activated or rolled back.
    """

    def __init__(self, default: RankingModel, models_root: Path | None = None,
                 ranking_root: Path | None = None):
        self.default, self.root, self.ranking_root = default, models_root, ranking_root
        self._by_model: dict[str, tuple[RankingModel, str]] = {}

    def for_model(self, model_name: str) -> RankingModel:
        return self._found(model_name)[0]

    def source(self, model_name: str) -> str:
        """Where the weights come from: "learned" (outcomes), "model_version" (adaptation) or "shipped"."""
        return self._found(model_name)[1]

    def reload(self) -> None:
        self._by_model = {}

    def _found(self, model_name: str) -> tuple[RankingModel, str]:
        found = self._by_model.get(model_name)
        if found is None:
            found = self._by_model[model_name] = self._lookup(model_name)
        return found

    def _lookup(self, model_name: str) -> tuple[RankingModel, str]:
        if self.ranking_root is not None:
            active = mv.active_version(self.ranking_root)
            learned = mv.read_manifest(self.ranking_root / active) if active else None
            if learned and learned.get("model") == model_name and fits(learned.get("ranking")):
                return RankingModel.from_dict(learned["ranking"]), "learned"
        if self.root is not None:
            for manifest in mv.list_versions(self.root):
                stored = manifest.get("ranking")
                if manifest.get("model") == model_name and fits(stored):
                    return RankingModel.from_dict(stored), "model_version"
        return self.default, "shipped"


def fits(stored: dict[str, Any] | None) -> bool:
    """Whether stored weights were fitted on today's signals (see FEATURES)."""
    return bool(stored) and stored.get("info", {}).get("features") == FEATURES


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class Query:
    """What is searched for: a stored record (match by id) or free text."""

    vector: np.ndarray  # (d,) query-role embedding
    tokens: list[str]
    domains: list[str]
    exclude_id: str | None = None
    # The capability that is the query (match by a capability's id): its cases count for the needs.
    capability_id: str | None = None


@dataclass(eq=False)
class Hit:
    segment: Segment
    row: int
    id: str
    logit: float
    score: float
    # Every candidate of a query shares one table; only the page's hits are ever explained, so
    # their signal and rank dicts are built on first use instead of for all ~150 candidates.
    table: "CandidateTable" = field(repr=False)
    index: int

    @cached_property
    def signals(self) -> dict[str, float]:
        return {k: float(v[self.index]) for k, v in self.table.features.items()}

    @cached_property
    def ranks(self) -> dict[str, int]:
        return {k: int(v[self.index]) for k, v in self.table.ranks.items()}


@dataclass
class CandidateTable:
    features: dict[str, np.ndarray]  # every signal (and its `_raw` value) of every candidate
    ranks: dict[str, np.ndarray]  # 1-based rank of every candidate by each signal alone


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
        # The dense index numbers a segment's vectors by row: the mask serves as is.
        _, dense_ids = seg.dense.search(query.vector[None, :], min(DENSE_CANDIDATES, len(allowed_rows)),
                                        allowed_rows=None if all_allowed else allowed)
        # One BM25 pass serves both the lexical candidates and every candidate's lexical signal.
        lex_scores = seg.lexical.scores(query.tokens)
        lex_rows, _ = seg.lexical.best_rows(lex_scores, LEXICAL_CANDIDATES, allowed=allowed)
        rows = np.union1d(dense_ids[0][dense_ids[0] >= 0], lex_rows).astype(np.int64)
        if len(rows) == 0:
            continue
        if lex_norm is None:
            # Normalise with the base segment's statistics so every segment is on one scale.
            lex_norm = snapshot.base[kind].lexical.max_score(query.tokens) or 1.0
        dense = seg.doc_vectors[rows] @ query.vector
        passage = best_passages(seg, rows, query.vector, dense)
        lexical = np.clip(lex_scores[rows].astype(np.float64) / lex_norm, 0.0, 1.0)
        # Predicted domains are shown, not ranked on: a classifier error (about one in five)
        # would otherwise push good matches down (CSL dev: nDCG@10 0.991 vs 0.994). Where either
        # side has no client-given domain, agreement is unknown: NaN here (see rank()).
        domain = np.full(len(rows), np.nan)
        if qdomains:
            masks = seg.domain_mask[rows]
            known = masks.any(axis=1) & ~seg.domain_predicted[rows]
            cols = [seg.domain_codes.index(c) for c in qdomains if c in seg.domain_codes]
            domain[known] = masks[known][:, cols].any(axis=1)
        out.append((seg, rows, {"dense": dense.astype(np.float64), "passage": passage.astype(np.float64),
                                "lexical": lexical, "domain": domain}))
    return out


def standardize(features: dict[str, np.ndarray]) -> None:
    """Z-score the STANDARDIZED signals of one query's candidates in place, keeping `<name>_raw`."""
    for name in STANDARDIZED:
        raw = features[name]
        features[f"{name}_raw"] = raw
        sd = float(raw.std())
        # One candidate, or all alike: nothing stands out.
        features[name] = (raw - raw.mean()) / sd if sd > 1e-9 else np.zeros_like(raw)


@dataclass
class Candidates:
    """Every candidate of one query, over all segments, with its standardized signals."""

    segments: list[Segment]
    rows: np.ndarray
    ids: list[str]
    features: dict[str, np.ndarray]
    parts: list[tuple[Segment, np.ndarray, dict[str, np.ndarray]]]


def query_candidates(snapshot: Snapshot, kind: str, query: Query, filters: Filters | None = None,
                     include_restricted: bool = False, default_statuses: tuple[str, ...] | None = None,
                     ) -> Candidates | None:
    parts = candidate_features(snapshot, kind, query, filters, include_restricted, default_statuses)
    if not parts:
        return None
    names = list(parts[0][2])
    features = {k: np.concatenate([f[k] for _, _, f in parts]) for k in names}
    unknown = np.isnan(features["domain"])
    features["domain"][unknown] = 0.0
    features["domain_known"] = (~unknown).astype(np.float64)  # picks the model (untagged or not)
    standardize(features)
    return Candidates(segments=[seg for seg, r, _ in parts for _ in range(len(r))],
                      rows=np.concatenate([r for _, r, _ in parts]),
                      ids=[seg.ids[r] for seg, rs, _ in parts for r in rs.tolist()],
                      features=features, parts=parts)


def best_passages(seg: Segment, rows: np.ndarray, vector: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """Best passage cosine of each row; `whole` (its whole-text cosine) where it has no passage."""
    starts = seg.passage_offsets[rows]
    lengths = seg.passage_offsets[rows + 1] - starts
    best = whole.astype(np.float32, copy=True)
    has = np.flatnonzero(lengths > 0)
    if len(has):
        # One product over every candidate's passages instead of one per candidate (~150 small
        # BLAS calls with their Python steps were a third of the scoring time).
        n = lengths[has]
        first = np.cumsum(n) - n
        index = np.repeat(starts[has] - first, n) + np.arange(int(n.sum()))
        sims = seg.passage_vectors[index] @ vector
        best[has] = np.maximum.reduceat(sims, first)
    return best


def rank(snapshot: Snapshot, kind: str, query: Query, model: RankingModel, *,
         filters: Filters | None = None, include_restricted: bool = False,
         default_statuses: tuple[str, ...] | None = None) -> list[Hit]:
    """All candidates, best first, with their signals and per-signal ranks."""
    found = query_candidates(snapshot, kind, query, filters, include_restricted, default_statuses)
    if found is None:
        return []
    features, rows, segments, ids, parts = found.features, found.rows, found.segments, found.ids, found.parts
    unknown = features["domain_known"] == 0.0
    # Ties are broken by id ascending. An integer key per candidate, in id order, lets lexsort do
    # it; argsort is stable, so equal ids (should a record be in two segments) keep their order,
    # as Python's stable sort on (-value, id) did.
    by_id = np.argsort(np.array(ids), kind="stable")
    id_key = np.empty(len(ids), dtype=np.int64)
    id_key[by_id] = np.arange(len(ids))
    positions = np.arange(1, len(ids) + 1)
    features["case"] = case_signal(snapshot, kind, query, parts, ids, include_restricted)
    ranks = {}
    for name in SHOWN:
        signal_rank = np.empty(len(ids), dtype=np.int64)
        signal_rank[np.lexsort((id_key, -features[name]))] = positions
        ranks[name] = signal_rank
    logits = model.logits(features)
    if model.untagged is not None and unknown.any():
        logits[unknown] = model.untagged.logits({k: v[unknown] for k, v in features.items()})
    order = np.lexsort((id_key, -logits)).tolist()
    table = CandidateTable(features, ranks)
    # Python lists: indexing them is several times cheaper than numpy scalars, for ~150 hits.
    row_list, logit_list, score_list = rows.tolist(), logits.tolist(), sigmoid(logits).tolist()
    return [Hit(segments[i], row_list[i], ids[i], logit_list[i], score_list[i], table, i) for i in order]


def case_signal(snapshot: Snapshot, kind: str, query: Query, parts: list[tuple[Segment, np.ndarray, Any]],
                ids: list[str], include_restricted: bool) -> np.ndarray:
    """The `case` evidence of every candidate (see the module docstring); 0 where it has no meaning."""
    if kind == "capability":
        return cases.capability_signal(snapshot, ids, query.vector, include_restricted)
    if kind == "need" and query.capability_id:
        vectors = np.vstack([seg.query_vectors[rows] for seg, rows, _ in parts])
        return cases.need_signal(snapshot, query.capability_id, vectors, include_restricted)
    return np.zeros(len(ids))


def contributions(model: RankingModel, signals: dict[str, float]) -> dict[str, float]:
    return {name: model.weights.get(name, 0.0) * signals[name] for name in SHOWN}


def logit_of(model: RankingModel, signals: dict[str, float]) -> float:
    return model.bias + math.fsum(contributions(model, signals).values())
