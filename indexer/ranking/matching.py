"""Matching by id and free-text search over the served snapshot, with explanations."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.ranking.explain import MATCH_TERMS, QUERY_TERMS, Side, explain
from indexer.ranking.hybrid import Hit, Query, RankingModel, RankingModels, rank
from indexer.retrieval import cases
from indexer.retrieval.documents import key_text_of
from indexer.retrieval.engine import SearchEngine, Snapshot
from indexer.retrieval.segment import Filters, Segment
from models import model_versions as mv

OPEN_STATUSES = ("open", "matching")
OTHER = {"need": "capability", "capability": "need"}
DIRECTIONS = {"need": "need_to_capability", "capability": "capability_to_need"}


class NotFound(LookupError):
    pass


@dataclass
class MatchPage:
    hits: list[Hit]
    total: int
    snapshot: Snapshot
    query_side: Side
    direction: str
    target_kind: str
    ranking: RankingModel  # the weights the hits were scored with (the snapshot's model's)
    took_ms: float = 0.0
    # For the cases a hit cites: the query's vector, the record that is the query (match by id),
    # and whether the caller may see restricted records.
    query_vector: np.ndarray | None = None
    query_id: str | None = None
    include_restricted: bool = False


class Matcher:
    def __init__(self, engine: SearchEngine, model: RankingModel, tokenizer: Any,
                 domain_names: dict[str, str]):
        """`model`: the weights for the base encoder (and any model version without its own)."""
        self.engine, self.model, self.tokenizer, self.names = engine, model, tokenizer, domain_names
        self.rankings = RankingModels(model, mv.models_root(engine.data_dir), mv.ranking_root(engine.data_dir))

    def ranking(self, snap: Snapshot) -> RankingModel:
        return self.rankings.for_model(snap.model)

    def snapshot(self) -> Snapshot:
        snap = self.engine.snapshot
        if snap is None:
            raise RuntimeError("index not loaded")
        return snap

    # ---- queries --------------------------------------------------------------------
    def match_record(self, kind: str, record_id: str, *, filters: Filters | None, include_restricted: bool,
                     limit: int, offset: int, include_closed: bool = False) -> MatchPage:
        t0 = time.perf_counter()
        snap = self.snapshot()
        found = snap.locate(kind, record_id)
        if found is None:
            raise NotFound(record_id)
        seg, row = found
        if seg.restricted[row] and not include_restricted:
            raise NotFound(record_id)
        a, b = seg.passage_range(row)
        side = Side(title="", text="", passages=seg.passages[a:b],
                    passage_vectors=seg.passage_vectors[a:b], domains=seg.domains_of(row),
                    domain_names=[self.names.get(c, c) for c in seg.domains_of(row)],
                    domains_predicted=bool(seg.domain_predicted[row]),
                    key_terms=seg.key_terms_of(row, QUERY_TERMS))
        query = Query(vector=seg.query_vectors[row], tokens=seg.tokens[row], domains=seg.given_domains_of(row),
                      exclude_id=record_id if OTHER[kind] == kind else None,
                      capability_id=record_id if kind == "capability" else None)
        target = OTHER[kind]
        statuses = None if (target != "need" or include_closed) else OPEN_STATUSES
        ranking = self.ranking(snap)
        hits = rank(snap, target, query, ranking, filters=filters,
                    include_restricted=include_restricted, default_statuses=statuses)
        return MatchPage(hits[offset:offset + limit], len(hits), snap, side, DIRECTIONS[kind], target,
                         ranking, (time.perf_counter() - t0) * 1000, query.vector, record_id, include_restricted)

    def search(self, text: str, target: str, *, filters: Filters | None, include_restricted: bool,
               limit: int, offset: int, include_closed: bool = False) -> MatchPage:
        t0 = time.perf_counter()
        snap = self.snapshot()
        # The snapshot's own encoder (the model that built it); free text skips the cache.
        built_by = snap.encoder or self.engine.encoder
        encoder = getattr(built_by, "inner", built_by)
        vector = encoder.encode_queries([text])[0]
        domains = list(filters.domain) if filters and filters.domain else []
        side = Side(title="", text=text, passages=[text], passage_vectors=vector[None, :],
                    domains=domains, domain_names=[self.names.get(c, c) for c in domains],
                    key_terms=dict(self.tokenizer.key_terms(text, top_k=QUERY_TERMS)))
        query = Query(vector=vector, tokens=self.tokenizer.tokens(text), domains=domains)
        statuses = None if (target != "need" or include_closed) else OPEN_STATUSES
        ranking = self.ranking(snap)
        hits = rank(snap, target, query, ranking, filters=filters,
                    include_restricted=include_restricted, default_statuses=statuses)
        return MatchPage(hits[offset:offset + limit], len(hits), snap, side, "search", target,
                         ranking, (time.perf_counter() - t0) * 1000, vector, None, include_restricted)

    # ---- explanations ---------------------------------------------------------------
    @staticmethod
    def needs_query_text(page: MatchPage) -> bool:
        """Whether explain_hit needs the query record's row (its key terms are not stored)."""
        return page.query_side.key_terms is None

    def explain_hit(self, page: MatchPage, hit: Hit, query_row: Any | None, match_row: Any) -> dict[str, Any]:
        query_side = page.query_side
        if query_row is not None:
            query_side = Side(title=query_row.title, text=key_text_of(query_row),
                              passages=query_side.passages, passage_vectors=query_side.passage_vectors,
                              domains=query_side.domains, domain_names=query_side.domain_names,
                              domains_predicted=query_side.domains_predicted, key_terms=query_side.key_terms)
        seg: Segment = hit.segment
        a, b = seg.passage_range(hit.row)
        domains, key_terms = seg.domains_of(hit.row), seg.key_terms_of(hit.row, MATCH_TERMS)
        # The text is only read to extract key terms the index does not hold (as for the query side).
        match_side = Side(title=match_row.title, text=key_text_of(match_row) if key_terms is None else "",
                          passages=seg.passages[a:b], passage_vectors=seg.passage_vectors[a:b], domains=domains,
                          domain_names=[self.names.get(c, c) for c in domains], key_terms=key_terms,
                          domains_predicted=bool(seg.domain_predicted[hit.row]))
        return explain(page.ranking, hit, page.direction, query_side, match_side, self.tokenizer, self.names,
                       self.cases_for(page, hit))

    @staticmethod
    def cases_for(page: MatchPage, hit: Hit) -> list[dict[str, Any]]:
        """Scenarios similar to the need side of the pair that its capability side delivered."""
        if page.target_kind == "capability" and page.query_vector is not None:
            capability, vector = hit.id, page.query_vector
        elif page.direction == "capability_to_need" and page.query_id is not None:
            capability, vector = page.query_id, hit.segment.query_vectors[hit.row]
        else:
            return []
        return cases.cited(page.snapshot, capability, vector, page.include_restricted)


def empty_vector(dim: int) -> np.ndarray:
    return np.zeros(dim, dtype=np.float32)
