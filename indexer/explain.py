"""Explanations a civil servant can read: why this record was ranked here.

Built only for the page of results returned, from data the index already holds
(passage vectors, each record's key terms), so explaining costs no model call and, for
stored records, no segmentation either.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.ranking import SIGNALS, Hit, RankingModel, contributions

SIGNAL_LABELS = {
    "dense": "整体语义相似度", "passage": "最佳段落语义相似度", "lexical": "关键词匹配度(BM25)",
    "domain": "领域一致", "rel": "与本次最佳结果的语义差距",
}


@dataclass
class Side:
    """One side of a match: its title, full text, passages and their vectors, domain names."""

    title: str
    text: str
    passages: list[str]
    passage_vectors: np.ndarray  # (p, d)
    domains: list[str]  # codes
    domain_names: list[str]
    # Stored at index time (indexer/keyterms.py), best first; None: extracted from `text`.
    key_terms: dict[str, float] | None = None


# The query's best terms against more of the match's, so a term central to the query is found
# even where the match mentions it in passing.
QUERY_TERMS, MATCH_TERMS = 40, 80


def terms_of(side: Side, tokenizer: Any, top_k: int) -> dict[str, float]:
    if side.key_terms is not None:
        return dict(list(side.key_terms.items())[:top_k])
    return dict(tokenizer.key_terms(side.text, top_k=top_k))


def shared_terms(tokenizer: Any, q: dict[str, float], m: dict[str, float],
                 limit: int = 8) -> list[dict[str, Any]]:
    """Key terms on both sides (or synonyms of each other), generic words only as a last resort."""
    found: dict[str, float] = {}
    for term, wq in q.items():
        if term in m:
            found[term] = math.sqrt(wq * m[term])
            continue
        for variant in tokenizer.synonyms.get(term, ()):  # 无人机 ~ 低空飞行器
            if variant in m:
                found[f"{term}≈{variant}"] = 0.9 * math.sqrt(wq * m[variant])
                break
    specific = {t: w for t, w in found.items() if not tokenizer.is_generic(t.split("≈")[0])}
    chosen = specific or found
    ranked = sorted(chosen.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    top = ranked[0][1] if ranked else 1.0
    return [{"term": t, "weight": round(w / top, 3), "generic": tokenizer.is_generic(t.split("≈")[0])}
            for t, w in ranked]


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


def domain_match(query: Side, match: Side) -> dict[str, Any]:
    shared = [c for c in match.domains if c in set(query.domains)]
    return {"match": bool(shared), "shared": shared, "query_domains": query.domains,
            "match_domains": match.domains}


def signal_table(model: RankingModel, hit: Hit) -> dict[str, Any]:
    contrib = contributions(model, hit.signals)
    table = {}
    for name in SIGNALS:
        raw = hit.signals["lexical_raw"] if name == "lexical" else hit.signals[name]
        table[name] = {
            "label": SIGNAL_LABELS[name], "raw": round(raw, 6), "normalized": round(hit.signals[name], 6),
            "weight": model.weights.get(name, 0.0), "contribution": round(contrib[name], 6),
            "rank": hit.ranks.get(name),
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


def summary(direction: str, score: float, match: Side, terms: list[dict[str, Any]],
            pairs: list[dict[str, Any]], dom: dict[str, Any], names: dict[str, str]) -> str:
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
    if dom["shared"]:
        parts.append("同属" + "、".join(names.get(c, c) for c in dom["shared"]) + "领域")
    elif dom["query_domains"] and dom["match_domains"]:
        parts.append("属跨领域匹配（" + "、".join(names.get(c, c) for c in dom["match_domains"][:2]) + "）")
    return "，".join(parts) + "。"


def explain(model: RankingModel, hit: Hit, direction: str, query: Side, match: Side,
            tokenizer: Any, names: dict[str, str]) -> dict[str, Any]:
    terms = shared_terms(tokenizer, terms_of(query, tokenizer, QUERY_TERMS),
                         terms_of(match, tokenizer, MATCH_TERMS))
    pairs = evidence(query, match)
    dom = domain_match(query, match)
    return {
        "summary": summary(direction, hit.score, match, terms, pairs, dom, names),
        "shared_terms": terms,
        "evidence": pairs,
        "domain_match": {**dom, "query_domain_names": [names.get(c, c) for c in dom["query_domains"]],
                         "match_domain_names": [names.get(c, c) for c in dom["match_domains"]]},
        "signals": signal_table(model, hit),
        "score_rule": "score = 1 / (1 + exp(-(bias + Σ signals[*].contribution)))",
        "bias": model.bias,
        "logit": round(hit.logit, 6),
    }
