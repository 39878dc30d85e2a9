"""Feedback on recommendations: storage checks, export (CSV/JSONL) and precision at ranks shown."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import repository
from models.db import Capability, Feedback, Need
from models.taxonomy import Taxonomy

LABELS = ("relevant", "irrelevant", "contacted", "deal")
# Contacting a supplier or closing a deal means the recommendation was a good one.
POSITIVE = frozenset({"relevant", "contacted", "deal"})
DEFAULT_KS = (1, 3, 5, 10)
UNCLASSIFIED = "unclassified"
EXPORT_FIELDS = ("id", "created_at", "need_id", "need_title", "need_domain", "capability_id",
                 "capability_title", "organization", "label", "rank_shown", "index_version",
                 "direction", "note")


def missing_records(session: Session, need_id: str, capability_id: str) -> list[dict[str, str]]:
    """The referenced records that do not exist, as {"field", "id"} (empty when both exist)."""
    missing = []
    if repository.get(session, "need", need_id) is None:
        missing.append({"field": "need_id", "id": need_id})
    if repository.get(session, "capability", capability_id) is None:
        missing.append({"field": "capability_id", "id": capability_id})
    return missing


def feedback_dict(row: Feedback) -> dict[str, Any]:
    return {"id": row.id, "need_id": row.need_id, "capability_id": row.capability_id, "label": row.label,
            "note": row.note, "direction": row.direction, "index_version": row.index_version,
            "rank_shown": row.rank_shown, "created_at": row.created_at}


def export_rows(session: Session) -> list[dict[str, Any]]:
    """Every feedback row, oldest first, with the titles of both records (blank once deleted)."""
    stmt = (select(Feedback, Need.title, Need.domain, Capability.title, Capability.organization)
            .outerjoin(Need, Need.id == Feedback.need_id)
            .outerjoin(Capability, Capability.id == Feedback.capability_id)
            .order_by(Feedback.id))
    rows = []
    for fb, need_title, need_domain, cap_title, organization in session.execute(stmt):
        rows.append({**feedback_dict(fb), "need_title": need_title, "need_domain": need_domain,
                     "capability_title": cap_title, "organization": organization})
    return rows


def to_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in EXPORT_FIELDS})
    # The BOM makes Excel and WPS read the file as UTF-8 (Chinese titles, notes).
    return "\ufeff".encode() + buffer.getvalue().encode("utf-8")


def to_jsonl(rows: Iterable[dict[str, Any]]) -> bytes:
    lines = [json.dumps({k: _cell(row.get(k)) if k == "created_at" else row.get(k) for k in EXPORT_FIELDS},
                        ensure_ascii=False) for row in rows]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)  # SQLite drops the zone; times are stored in UTC
    return value.isoformat() if hasattr(value, "isoformat") else value


def latest_judgments(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One judgment per (need, capability): the latest label, with the latest known rank and version.

    A pair labelled "contacted" and later "deal" is one recommendation, not two.
    """
    by_pair: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        key = (row["need_id"], row["capability_id"])
        previous = by_pair.get(key, {})
        merged = {**previous, **{k: v for k, v in row.items() if v is not None}}
        merged["label"] = row["label"]
        by_pair[key] = merged
    return list(by_pair.values())


def _precision(judgments: list[dict[str, Any]], ks: Sequence[int]) -> dict[str, dict[str, Any]]:
    out = {}
    for k in ks:
        shown = [j for j in judgments if j.get("rank_shown") and j["rank_shown"] <= k]
        good = sum(j["label"] in POSITIVE for j in shown)
        out[f"p@{k}"] = {"precision": round(good / len(shown), 4) if shown else None, "n": len(shown)}
    return out


def _group_summary(judgments: list[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any]:
    return {"judged": len(judgments), "with_rank": sum(1 for j in judgments if j.get("rank_shown")),
            "labels": {label: sum(j["label"] == label for j in judgments) for label in LABELS},
            "precision": _precision(judgments, ks)}


def precision_report(rows: Sequence[dict[str, Any]], taxonomy: Taxonomy,
                     ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Precision at the ranks shown (overall, by the need's domain, by index version).

    A judgment counts toward P@k when its recommendation was shown at rank <= k; judgments
    without a rank count in the label totals only.
    """
    judgments = latest_judgments(rows)
    by_domain: dict[str, list[dict[str, Any]]] = {}
    by_version: dict[str, list[dict[str, Any]]] = {}
    for j in judgments:
        by_domain.setdefault(j.get("need_domain") or UNCLASSIFIED, []).append(j)
        by_version.setdefault(j.get("index_version") or "unknown", []).append(j)
    return {
        "ks": list(ks), "feedback_rows": len(rows), "positive_labels": sorted(POSITIVE),
        "overall": _group_summary(judgments, ks),
        "by_domain": [{"domain": code, "name": taxonomy.name(code) or "未分类",
                       **_group_summary(group, ks)} for code, group in sorted(by_domain.items())],
        "by_index_version": [{"index_version": version, **_group_summary(group, ks)}
                             for version, group in sorted(by_version.items())],
    }
