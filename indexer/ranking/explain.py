"""Explanations a civil servant can read: why this record was ranked here.

Built only for the page of results returned, from data the index already holds
(passage vectors, each record's key terms), so explaining costs no model call and, for
stored records, no segmentation either.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.ranking.hybrid import SHOWN, Hit, RankingModel, contributions

SIGNAL_LABELS = {
    "dense": "整体语义相似度", "passage": "最佳段落语义相似度", "lexical": "关键词匹配度(BM25)",
    "domain": "领域一致", "case": "已落地类似场景的语义相似度",
}
UNKNOWN_DOMAIN_LABEL = "领域一致（一方领域未由发布方标注，不计入；得分按其余信号估计）"


@dataclass
class Side:
    """One side of a match: its title, full text, passages and their vectors, domain names."""

    title: str
    text: str
    passages: list[str]
    passage_vectors: np.ndarray  # (p, d)
    domains: list[str]  # codes
    domain_names: list[str]
    # Predicted by the classifier (not sent by the client): shown, never ranked on.
    domains_predicted: bool = False
    # Stored at index time (indexer/retrieval/keyterms.py), best first; None: extracted from `text`
    # (only then is `text` read, so it may be left empty beside stored key terms).
    key_terms: dict[str, float] | None = None
    # As the query side of a page: its terms prepared once for all the page's hits (query_terms).
    _query_terms: QueryTerms | None = field(default=None, init=False, repr=False, compare=False)


# The query's best terms against more of the match's, so a term central to the query is found
# even where the match mentions it in passing.
QUERY_TERMS, MATCH_TERMS = 40, 80


def terms_of(side: Side, tokenizer: Any, top_k: int) -> dict[str, float]:
    if side.key_terms is not None:
        if len(side.key_terms) <= top_k:
            return side.key_terms  # as stored (only read): no copy per hit
        return dict(list(side.key_terms.items())[:top_k])
    return dict(tokenizer.key_terms(side.text, top_k=top_k))


@dataclass
class QueryTerms:
    """The query's key terms with what explaining a hit needs of each: weight, synonyms, genericness.

    Every hit of a page is compared with the same query terms, so this is built once per page
    (query_terms): looking up the tokenizer's synonyms and is_generic (a normalize() each, through
    a wrapper's __getattr__ in the service) per hit and term was most of what explaining cost.
    """

    terms: list[tuple[str, float, tuple[str, ...], bool]]  # term, weight, synonyms, generic

    @classmethod
    def build(cls, terms: dict[str, float], tokenizer: Any) -> "QueryTerms":
        synonyms, is_generic = tokenizer.synonyms, tokenizer.is_generic
        # A shared term is `term` or `term≈variant`; its genericness is that of the part before
        # the first '≈', which is the same for both spellings.
        return cls([(term, weight, synonyms.get(term, ()), is_generic(term.split("≈")[0]))
                    for term, weight in terms.items()])


def query_terms(side: Side, tokenizer: Any) -> QueryTerms:
    """The side's QueryTerms, remembered on it: a page's query side is explained once per hit."""
    if side._query_terms is None:
        side._query_terms = QueryTerms.build(terms_of(side, tokenizer, QUERY_TERMS), tokenizer)
    return side._query_terms


def shared_terms(query: QueryTerms, m: dict[str, float], limit: int = 8) -> list[dict[str, Any]]:
    """Key terms on both sides (or synonyms of each other), generic words only as a last resort."""
    found: dict[str, float] = {}
    generic: dict[str, bool] = {}
    for term, wq, variants, is_generic in query.terms:
        if term in m:
            found[term] = math.sqrt(wq * m[term])
            generic[term] = is_generic
            continue
        for variant in variants:  # 无人机 ~ 低空飞行器
            if variant in m:
                key = f"{term}≈{variant}"
                found[key] = 0.9 * math.sqrt(wq * m[variant])
                generic[key] = is_generic
                break
    specific = {t: w for t, w in found.items() if not generic[t]}
    chosen = specific or found
    ranked = sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    top = ranked[0][1] if ranked else 1.0
    return [{"term": t, "weight": round(w / top, 3), "generic": generic[t]} for t, w in ranked]


def evidence(query: Side, match: Side, limit: int = 2) -> list[dict[str, Any]]:
    """The best-matching passage pairs by cosine of their stored vectors."""
    if len(query.passage_vectors) == 0 or len(match.passage_vectors) == 0:
        return []
    sims = query.passage_vectors @ match.passage_vectors.T
    pairs = []
    used_q: set[int] = set()
    used_m: set[int] = set()
    for flat in np.argsort(-sims, axis=None):
        i, j = divmod(int(flat), sims.shape[1])
        if i in used_q or j in used_m:
            continue
        pairs.append({"query_span": query.passages[i], "match_span": match.passages[j],
                      "similarity": round(float(sims[i, j]), 4)})
        used_q.add(i)
        used_m.add(j)
        if len(pairs) >= limit:
            break
    return pairs


def domain_match(query: Side, match: Side, counted: bool) -> dict[str, Any]:
    """Whether the two sides share a domain; `counted`: whether the score relies on it (both
    sides' domains given by the client), else the domains shown are (partly) predicted."""
    shared = [c for c in match.domains if c in set(query.domains)]
    return {"match": bool(shared), "shared": shared, "query_domains": query.domains,
            "match_domains": match.domains, "query_domains_predicted": query.domains_predicted,
            "match_domains_predicted": match.domains_predicted, "counted_in_score": counted}


def signal_table(model: RankingModel, hit: Hit) -> dict[str, Any]:
    signals, ranks, weights = hit.signals, hit.ranks, model.weights
    contrib = contributions(model, signals)
    table = {}
    unknown = not signals.get("domain_known", 1.0)
    for name in SHOWN:
        # Standardized signals: `raw` is the value as measured, `normalized` its z-score among
        # this query's candidates (what the weight multiplies).
        raw = signals.get(f"{name}_raw", signals[name])
        label = UNKNOWN_DOMAIN_LABEL if name == "domain" and unknown else SIGNAL_LABELS[name]
        table[name] = {
            "label": label, "raw": round(raw, 6), "normalized": round(signals[name], 6),
            "weight": weights.get(name, 0.0), "contribution": round(contrib[name], 6),
            "rank": ranks.get(name),
        }
    return table


def _short(text: str, n: int = 36) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def strength(score: float) -> str:
    if score >= 0.7:
        return "高度匹配"
    if score >= 0.4:
        return "较为匹配"
    if score >= 0.15:
        return "可能相关"
    return "相关性较弱"


DELIVERED = {"building": "正由{who}建设", "testing": "已由{who}落地", "promoting": "已由{who}落地",
             "retired": "曾由{who}落地"}


def case_phrase(direction: str, case: dict[str, Any]) -> str:
    """类似场景「…」已由该单位落地（2024年）: the best case, as the summary cites it."""
    who = "本单位" if direction == "capability_to_need" else "该单位"
    year = f"（{case['year']}年）" if case.get("year") else ""
    return f"类似场景「{_short(case['title'], 24)}」{DELIVERED[case['stage']].format(who=who)}{year}"


def summary(direction: str, score: float, match: Side, terms: list[dict[str, Any]],
            pairs: list[dict[str, Any]], dom: dict[str, Any], names: dict[str, str],
            cases: list[dict[str, Any]] | None = None) -> str:
    """One Chinese sentence: what this match addresses and on what evidence."""
    subject = {"need_to_capability": "该能力", "capability_to_need": "该需求",
               "search": "该结果"}.get(direction, "该结果")
    target = {"need_to_capability": "需求", "capability_to_need": "本能力", "search": "查询"}[direction]
    parts = [f"{strength(score)}（{score:.2f}）：{subject}「{_short(match.title, 30)}」"]
    if pairs:
        parts.append(f"以“{_short(pairs[0]['match_span'])}”回应{target}中“{_short(pairs[0]['query_span'])}”"
                     f"（语义相似度{pairs[0]['similarity']:.2f}）")
    specific = [t["term"] for t in terms if not t["generic"]][:3]
    if specific:
        parts.append("双方共同涉及" + "、".join(f"「{t}」" for t in specific))
    elif pairs:
        parts.append("用词不同但语义相近")
    predicted = "" if dom["counted_in_score"] else "经系统预测"
    if dom["shared"]:
        parts.append(predicted + "同属" + "、".join(names.get(c, c) for c in dom["shared"]) + "领域")
    elif dom["query_domains"] and dom["match_domains"]:
        parts.append(predicted + "属跨领域匹配（"
                     + "、".join(names.get(c, c) for c in dom["match_domains"][:2]) + "）")
    if cases:
        parts.append(case_phrase(direction, cases[0]))
    return "，".join(parts) + "。"


def explain(model: RankingModel, hit: Hit, direction: str, query: Side, match: Side,
            tokenizer: Any, names: dict[str, str], cases: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    counted = bool(hit.signals.get("domain_known", 1.0))
    model = model.for_domain(counted)  # the model that scored this pair
    terms = shared_terms(query_terms(query, tokenizer), terms_of(match, tokenizer, MATCH_TERMS))
    pairs = evidence(query, match)
    dom = domain_match(query, match, counted)
    return {
        "summary": summary(direction, hit.score, match, terms, pairs, dom, names, cases),
        "shared_terms": terms,
        "evidence": pairs,
        "domain_match": {**dom, "query_domain_names": [names.get(c, c) for c in dom["query_domains"]],
                         "match_domain_names": [names.get(c, c) for c in dom["match_domains"]]},
        "signals": signal_table(model, hit),
        "cases": cases or [],
        "score_rule": "score = 1 / (1 + exp(-(bias + Σ signals[*].contribution)))",
        "bias": model.bias,
        "logit": round(hit.logit, 6),
    }
