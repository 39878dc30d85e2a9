"""The case library (案例集): which scenarios a capability, or its organization, delivered.

Matching cites these cases as evidence ("类似场景「…」已由该单位落地") and ranks with their
similarity as the `case` signal. Everything a lookup needs is in the segments: a capability's
organization and a scenario's delivering capabilities, stage, year and outcome are stored per
row (IndexDoc.extra). The maps from capability to scenario and from organization to
capabilities are built once per segment, and each capability's deliveries once per snapshot
(`table_of`, which the engine calls when it installs or refreshes one), so a request only does
dictionary look-ups and a few dot products. A map's entries are checked against the snapshot
(`locate`), so a scenario or capability changed or deleted since its segment was built is read
from the delta, or not at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.retrieval.segment import Segment
from models.scenario_store import DELIVERY_STAGES

MAPS_ATTR = "_case_maps"


@dataclass(frozen=True)
class CaseMaps:
    by_capability: dict[str, list[str]]  # capability id -> ids of scenarios it delivered (scenario segments)
    caps_of_org: dict[str, list[str]]  # organization -> capability ids (capability segments)


def maps_of(seg: Segment) -> CaseMaps:
    """The segment's maps, built on first use and kept on it (segments never change)."""
    found = seg.__dict__.get(MAPS_ATTR)
    if found is None:
        by_capability: dict[str, list[str]] = {}
        caps_of_org: dict[str, list[str]] = {}
        for row, rid in enumerate(seg.ids):
            extra = seg.extra_of(row)
            if seg.kind == "scenario" and extra.get("stage") in DELIVERY_STAGES:
                for cap in extra.get("caps") or ():
                    by_capability.setdefault(cap, []).append(rid)
            elif seg.kind == "capability" and extra.get("org"):
                caps_of_org.setdefault(extra["org"], []).append(rid)
        found = CaseMaps(by_capability, caps_of_org)
        seg.__dict__[MAPS_ATTR] = found
    return found


@dataclass(frozen=True)
class Delivery:
    """A scenario delivered by `capability_id`, cited for the matched capability itself ("self") or
    for another capability of the same organization ("organization"). `restricted`: the scenario or
    the delivering capability is restricted, so only admin callers may see this case."""

    scenario_id: str
    segment: Segment
    row: int
    capability_id: str
    via: str
    restricted: bool


def _current(snapshot: Any, kind: str, record_id: str, seg: Segment) -> int | None:
    """The record's row in `seg` if that row is the one the snapshot serves (not changed since)."""
    found = snapshot.locate(kind, record_id)
    return found[1] if found is not None and found[0] is seg else None


class CaseTable:
    """Every capability's deliveries in one snapshot (query-independent, so built once per snapshot)."""

    def __init__(self, snapshot: Any):
        direct: dict[str, list[tuple[Segment, int, str]]] = {}
        for seg, _ in snapshot.segments("scenario"):
            for cap, sids in maps_of(seg).by_capability.items():
                for sid in sids:
                    row = _current(snapshot, "scenario", sid, seg)
                    if row is not None:  # else changed or deleted: the delta's own map lists it now
                        direct.setdefault(cap, []).append((seg, row, sid))
        table: dict[str, dict[str, Delivery]] = {}
        for cap, items in direct.items():
            found = snapshot.locate("capability", cap)
            cap_restricted = bool(found[0].restricted[found[1]]) if found else False
            for seg, row, sid in items:
                hidden = bool(seg.restricted[row])
                table.setdefault(cap, {})[sid] = Delivery(sid, seg, row, cap, "self", hidden)
                for peer in self._peers(snapshot, cap, found):
                    cited = table.setdefault(peer, {})
                    if sid not in cited:  # what the capability did itself comes first
                        cited[sid] = Delivery(sid, seg, row, cap, "organization", hidden or cap_restricted)
        self.by_capability = {cap: list(v.values()) for cap, v in table.items()}
        # Every delivery's scenario vector in one matrix, each capability's deliveries a contiguous run
        # of rows; one for admin callers, one without restricted cases. The case signal of all of a
        # query's candidates is then one matrix product and one reduceat (as best_passages does).
        self.runs = {admin: self._runs(admin) for admin in (True, False)}

    def _runs(self, include_restricted: bool) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
        vectors, runs = [], {}
        for cap, items in self.by_capability.items():
            shown = [d for d in items if include_restricted or not d.restricted]
            if shown:
                runs[cap] = (len(vectors), len(vectors) + len(shown))
                vectors.extend(d.segment.doc_vectors[d.row] for d in shown)
        return (np.vstack(vectors) if vectors else np.zeros((0, 0), np.float32)), runs

    @staticmethod
    def _peers(snapshot: Any, cap: str, found: tuple[Segment, int] | None) -> list[str]:
        org = found[0].extra_of(found[1]).get("org") if found else None
        if not org:
            return []
        peers = []
        for seg, _ in snapshot.segments("capability"):
            for peer in maps_of(seg).caps_of_org.get(org, ()):
                if peer != cap and _current(snapshot, "capability", peer, seg) is not None:
                    peers.append(peer)
        return peers

    def of(self, capability_id: str, include_restricted: bool) -> list[Delivery]:
        items = self.by_capability.get(capability_id, ())
        return [d for d in items if include_restricted or not d.restricted]


def table_of(snapshot: Any) -> CaseTable:
    """The snapshot's case table, built on first use and kept on the (immutable) snapshot."""
    table = snapshot.__dict__.get("_case_table")
    if table is None:
        table = CaseTable(snapshot)
        object.__setattr__(snapshot, "_case_table", table)  # a frozen dataclass: set once
    return table


def similarities(items: list[Delivery], vector: np.ndarray) -> np.ndarray:
    """Cosine of each delivered scenario's whole text with a query-role vector."""
    if not items:
        return np.zeros(0)
    return np.array([float(d.segment.doc_vectors[d.row] @ vector) for d in items])


def capability_signal(snapshot: Any, capability_ids: list[str], vector: np.ndarray,
                      include_restricted: bool) -> np.ndarray:
    """The `case` signal of candidate capabilities for one query: each one's best delivered
    scenario's cosine with the query, 0 for a capability with no case."""
    matrix, runs = table_of(snapshot).runs[include_restricted]
    out = np.zeros(len(capability_ids))
    present = [(i, runs[cap]) for i, cap in enumerate(capability_ids) if cap in runs]
    if not present:
        return out
    sims = matrix @ vector
    starts = np.array([run[0] for _, run in present])
    lengths = np.array([run[1] - run[0] for _, run in present])
    first = np.cumsum(lengths) - lengths
    index = np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))
    out[[i for i, _ in present]] = np.maximum.reduceat(sims[index], first)
    return out


def need_signal(snapshot: Any, capability_id: str, vectors: np.ndarray, include_restricted: bool) -> np.ndarray:
    """The `case` signal of candidate needs (rows of `vectors`) when a capability is the query: the
    best cosine of any scenario it (or its organization) delivered with each need."""
    items = table_of(snapshot).of(capability_id, include_restricted)
    if not items or len(vectors) == 0:
        return np.zeros(len(vectors))
    scenario_vectors = np.vstack([d.segment.doc_vectors[d.row] for d in items])
    return (vectors @ scenario_vectors.T).max(axis=1).astype(np.float64)


# A delivered scenario is cited as a case when its cosine with the query reaches this. On the
# realistic corpus a candidate whose best case sits below 0.90 was relevant less often than one
# without any case (0.5-1.3% against 2-3%), from 0.90 more often (6-7%, and half from 0.92): below
# the floor a "similar case" would mislead (docs/quality.md, "Case evidence").
CITE_MIN_SIMILARITY = 0.90
CITED = 3


def cited(snapshot: Any, capability_id: str, vector: np.ndarray, include_restricted: bool,
          limit: int = CITED) -> list[dict[str, Any]]:
    """The cases a match cites, most similar first: id, title, year, stage, similarity, outcome,
    and which capability delivered it (`via`: the matched one itself, or its organization)."""
    items = table_of(snapshot).of(capability_id, include_restricted)
    sims = similarities(items, vector)
    order = sorted(range(len(items)), key=lambda i: (-sims[i], items[i].scenario_id))
    out = []
    for i in order:
        if sims[i] < CITE_MIN_SIMILARITY or len(out) >= limit:
            break
        d = items[i]
        extra = d.segment.extra_of(d.row)
        out.append({"id": d.scenario_id, "title": extra.get("title", ""), "year": extra.get("year"),
                    "stage": extra.get("stage"), "similarity": round(float(sims[i]), 4),
                    "outcome": extra.get("outcome"), "capability_id": d.capability_id, "via": d.via})
    return out
