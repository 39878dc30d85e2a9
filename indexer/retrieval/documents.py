"""What the index knows of a record: its texts to embed and its filter fields.

The same function turns a database row into an ``IndexDoc`` at build time and at
incremental refresh, so a record is indexed identically on both paths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NEED, CAPABILITY, SCENARIO = "need", "capability", "scenario"
KINDS = (NEED, CAPABILITY, SCENARIO)
# Descriptions up to this length are embedded whole as one passage; longer ones are also
# split so a long capability can be matched on its best passage. 240 rather than 160: a third
# fewer encoder inputs and 17% fewer tokens per realistic record, nDCG@10 held in both directions
# (python -m benchmarks.passage_length, docs/benchmarks.md "Passage length").
PASSAGE_CHARS = 240


@dataclass
class IndexDoc:
    id: str
    kind: str
    title: str
    body: str
    domains: list[str]
    region: str
    status: str  # needs only; "" for capabilities
    org_type: str  # capabilities only; "" for needs
    restricted: bool
    passages: list[str] = field(default_factory=list)
    # Set when the domains were predicted by indexer/retrieval/classify.py, not given by the client;
    # the hash lets a stored prediction be written only onto the content it was made for.
    domain_predicted: bool = False
    content_hash: str = ""
    key_text: str = ""  # what explanations extract key terms from (key_text_of)
    # Facts the case library reads (indexer/retrieval/cases.py): a capability's organization; a
    # scenario's delivering capabilities, stage, year, outcome and title. Stored with the segment.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        return f"{self.title}。{self.body}" if self.body else self.title


def key_text_of(row: Any) -> str:
    """A record's text as explanations read it: title, description, cases, tags."""
    parts = [row.title, row.description or "", getattr(row, "cases", None) or "", "、".join(row.tags or [])]
    return "。".join(p for p in parts if p)


def doc_from_row(kind: str, row: Any, splitter: Any) -> IndexDoc:
    """Build the index view of a stored need or capability."""
    body_parts = [row.description or ""]
    if kind == CAPABILITY and getattr(row, "cases", None):
        body_parts.append(f"落地案例：{row.cases}")
    if kind == SCENARIO and row.lead_org:
        body_parts.append(f"场景方：{row.lead_org}")
    if row.tags:
        body_parts.append("标签：" + "、".join(row.tags))
    body = "\n".join(p for p in body_parts if p).strip()
    if kind == NEED:
        domains = [row.domain] if row.domain else []
    else:
        domains = list(row.domains or [])
    doc = IndexDoc(
        id=row.id, kind=kind, title=row.title, body=body, domains=domains,
        region=row.region or "", status=getattr(row, "status", "") if kind == NEED else "",
        org_type=getattr(row, "org_type", "") if kind == CAPABILITY else "",
        restricted=row.visibility == "restricted",
        domain_predicted=bool(getattr(row, "domain_predicted", False)) and bool(domains),
        content_hash=getattr(row, "content_hash", "") or "",
        key_text=key_text_of(row), extra=extra_of(kind, row),
    )
    doc.passages = passages_of(doc, splitter)
    return doc


def extra_of(kind: str, row: Any) -> dict[str, Any]:
    if kind == CAPABILITY:
        return {"org": (row.organization or "").strip()}
    if kind != SCENARIO:
        return {}
    return {"title": row.title, "caps": list(row.capability_ids or []), "stage": row.stage, "year": row.year,
            "need": row.need_id,
            "outcome": {"contract_wan": row.contract_wan, "first_purchase": row.first_purchase,
                        "signed_at": row.signed_at.isoformat() if row.signed_at else None}}


def passages_of(doc: IndexDoc, splitter: Any) -> list[str]:
    """Sentence-bounded passages of the body (the title is added when embedding)."""
    if not doc.body:
        return [doc.title]
    pieces = splitter.passages(doc.body, max_chars=PASSAGE_CHARS)
    return [p for p in pieces if p.strip()] or [doc.title]


def passage_texts_for_embedding(doc: IndexDoc) -> list[str]:
    # The title gives every passage its context ("what is this about").
    return [f"{doc.title}：{p}" if p != doc.title else p for p in doc.passages]
