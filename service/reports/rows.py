"""Matches with explanations for a batch of needs, produced one need at a time."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from indexer.ranking.matching import MatchPage, Matcher, NotFound
from models import repository
from models.database import session_scope
from models.repository import EVALUATION_FIELDS
from models.taxonomy import Taxonomy
from service.reports.model import MatchRow, NeedResult
from service.scenarios import evaluation_of

BATCH = 100
NOT_INDEXED = "该需求尚未进入检索索引（刚刚录入或修改），请稍后重新生成报告。"
NO_CANDIDATE = "暂无可匹配的企业能力。"


class KeyTermCache:
    """A tokenizer whose key terms are remembered.

    Explaining a match extracts the key terms of both texts; in a report the same
    need is explained once per match and the same capability for many needs, so
    remembering them makes a large report several times faster.
    """

    def __init__(self, tokenizer: Any, size: int = 4096):
        self._inner = tokenizer
        self._cached = lru_cache(maxsize=size)(self._key_terms)

    def _key_terms(self, text: str, top_k: int, generic_weight: float) -> tuple[tuple[str, float], ...]:
        return tuple(self._inner.key_terms(text, top_k=top_k, generic_weight=generic_weight))

    def key_terms(self, text: str, top_k: int = 20, idf: Any = None,
                  generic_weight: float = 0.1) -> list[tuple[str, float]]:
        if idf is not None:
            return self._inner.key_terms(text, top_k=top_k, idf=idf, generic_weight=generic_weight)
        return list(self._cached(text, top_k, generic_weight))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def report_matcher(matcher: Matcher) -> Matcher:
    """The service's matcher over the same index, with explanations' key terms remembered."""
    return Matcher(matcher.engine, matcher.model, KeyTermCache(matcher.tokenizer), matcher.names)


def need_fields(row: Any, taxonomy: Taxonomy, with_contacts: bool) -> dict[str, Any]:
    return {"id": row.id, "title": row.title, "publisher": row.publisher, "region": row.region,
            "status": row.status, "domain": row.domain, "domain_name": taxonomy.name(row.domain),
            "domain_predicted": bool(row.domain_predicted), "visibility": row.visibility,
            "budget_wan": row.budget_wan, "deadline": row.deadline.isoformat() if row.deadline else None,
            "contact": row.contact if with_contacts else None}


def capability_fields(row: Any, taxonomy: Taxonomy, with_contacts: bool) -> dict[str, Any]:
    return {"id": row.id, "title": row.title, "organization": row.organization, "org_type": row.org_type,
            "region": row.region, "domains": list(row.domains or []),
            "domain_names": [n for n in (taxonomy.name(c) for c in row.domains or []) if n],
            "visibility": row.visibility, "contact": row.contact if with_contacts else None}


class ResultSource:
    """Iterates NeedResults for need ids; counts what could not be reported."""

    def __init__(self, sessions: sessionmaker[Session], matcher: Matcher, taxonomy: Taxonomy, *,
                 per_need: int, min_score: float | None, include_restricted: bool,
                 weights: dict[str, float] | None = None):
        self.sessions, self.matcher, self.taxonomy = sessions, matcher, taxonomy
        self.weights = weights or dict.fromkeys(EVALUATION_FIELDS, 0.25)
        self.per_need, self.min_score, self.include_restricted = per_need, min_score, include_restricted
        self.vanished: list[str] = []  # deleted or made restricted after they were selected
        self.not_indexed: list[str] = []

    def __call__(self, need_ids: Sequence[str]) -> Iterator[NeedResult]:
        for start in range(0, len(need_ids), BATCH):
            yield from self._batch(need_ids[start:start + BATCH])

    def _visible(self, row: Any) -> bool:
        return row is not None and (self.include_restricted or row.visibility == "public")

    def _batch(self, need_ids: Sequence[str]) -> Iterator[NeedResult]:
        # Rows are read and the session closed before anything is yielded, so a slow
        # consumer never holds a database transaction open.
        pages: dict[str, MatchPage | None] = {}
        with session_scope(self.sessions) as session:
            needs = repository.get_many(session, "need", list(need_ids))
            for need_id in need_ids:
                if not self._visible(needs.get(need_id)):
                    continue
                try:
                    pages[need_id] = self.matcher.match_record(
                        "need", need_id, filters=None, include_restricted=self.include_restricted,
                        limit=self.per_need, offset=0)
                except NotFound:
                    pages[need_id] = None
            wanted = {h.id for page in pages.values() if page for h in page.hits}
            caps = repository.get_many(session, "capability", sorted(wanted))
            results = [(need_id, self._result(needs[need_id], pages[need_id], caps))
                       for need_id in need_ids if need_id in pages]
            self._evaluate_cases(session, [r for _, r in results])
        for need_id in need_ids:
            if need_id not in pages:
                self.vanished.append(need_id)
        yield from (r for _, r in results)

    def _evaluate_cases(self, session: Any, results: list[NeedResult]) -> None:
        """The cited scenarios' evaluation (the report's evaluation columns), read once per batch."""
        cited = [c for r in results for m in r.matches for c in m.explanation.get("cases", [])]
        rows = repository.get_many(session, "scenario", sorted({c["id"] for c in cited}))
        for case in cited:
            row = rows.get(case["id"])
            case["evaluation"] = evaluation_of(row, self.weights) if row is not None else None

    def _result(self, need: Any, page: MatchPage | None, caps: dict[str, Any]) -> NeedResult:
        with_contacts = self.include_restricted
        fields = need_fields(need, self.taxonomy, with_contacts)
        if page is None:
            self.not_indexed.append(need.id)
            return NeedResult(fields, [], NOT_INDEXED)
        matches = []
        for rank, hit in enumerate(page.hits, start=1):
            if self.min_score is not None and hit.score < self.min_score:
                break  # hits come best first
            cap = caps.get(hit.id)
            if not self._visible(cap):
                continue  # deleted since it was indexed
            explanation = self.matcher.explain_hit(page, hit, need, cap)
            terms = [t["term"] for t in explanation["shared_terms"] if not t["generic"]][:6]
            matches.append(MatchRow(rank, float(hit.score), capability_fields(cap, self.taxonomy, with_contacts),
                                    terms or [t["term"] for t in explanation["shared_terms"]][:3],
                                    explanation["summary"], explanation))
        note = None
        if not matches:
            note = (f"没有匹配度达到 {self.min_score:.2f} 的企业能力。" if self.min_score is not None
                    and page.hits else NO_CANDIDATE)
        return NeedResult(fields, matches, note)
