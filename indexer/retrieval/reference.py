"""Reference examples for the domain classifier: the seed corpora's records with their writers' domains.

A deployment whose clients send no domains (the normal case) has no labelled records of its own,
and the classifier then leans on the taxonomy alone. The seed corpora (data/seed/realistic and
data/seed/demo, about 2,000 records over all 20 domains) serve as labelled neighbours instead:
each one's title and the opening of its description, embedded once per encoder (the embedding
cache keeps them across restarts). On the realistic corpus sent untagged, top-1 rose from 0.807
to 0.867 (docs/quality.md, "Domain classification"). Records being classified are excluded by
id, so a deployment holding a seed corpus is never told its own writers' answer.
"""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.retrieval.embedding import Encoder
from models.taxonomy import SEED_DIR

log = logging.getLogger("scenematch.reference")
SEED_RECORD_DIRS = (SEED_DIR / "realistic", SEED_DIR / "demo")
# Title plus this much of the description: the part that says what a record is about
# (whole texts were not better, and cost more to embed).
EXAMPLE_CHARS = 150


@dataclass(frozen=True)
class ReferenceRecord:
    id: str
    text: str
    domains: tuple[str, ...]


def reference_records(folders: Sequence[Path] = SEED_RECORD_DIRS) -> list[ReferenceRecord]:
    out = []
    for folder in folders:
        for sub in ("needs", "capabilities"):
            for path in sorted((folder / sub).glob("*.jsonl")):
                with path.open(encoding="utf-8") as fh:
                    for line in fh:
                        if not line.strip():
                            continue
                        row = json.loads(line)
                        domains = tuple(row.get("domains") or ([row["domain"]] if row.get("domain") else []))
                        if domains:
                            text = f"{row['title']}。{(row.get('description') or '')[:EXAMPLE_CHARS]}"
                            out.append(ReferenceRecord(row["id"], text, domains))
    return out


@dataclass
class EmbeddedReferences:
    ids: list[str]
    vectors: np.ndarray  # (n, d) unit rows, passage role
    labels: np.ndarray  # (n, n_domains) bool


class ReferenceExamples:
    """The reference examples of each encoder, embedded on first use or warmed in the background."""

    def __init__(self, folders: Sequence[Path] = SEED_RECORD_DIRS):
        self.folders = folders
        self._lock = threading.Lock()
        self._ready: dict[tuple[str, tuple[str, ...]], EmbeddedReferences] = {}
        self._warming: set[tuple[str, tuple[str, ...]]] = set()

    def _embed(self, encoder: Encoder, codes: tuple[str, ...]) -> EmbeddedReferences:
        key = (encoder.name, codes)
        with self._lock:  # one embedding per encoder, however many callers wait for it
            found = self._ready.get(key)
            if found is not None:
                return found
            records = reference_records(self.folders)
            pos = {c: j for j, c in enumerate(codes)}
            labels = np.zeros((len(records), len(codes)), dtype=bool)
            for i, r in enumerate(records):
                for code in r.domains:
                    if code in pos:
                        labels[i, pos[code]] = True
            vectors = encoder.encode_passages([r.text for r in records]) if records else np.zeros((0, encoder.dim))
            found = self._ready[key] = EmbeddedReferences([r.id for r in records],
                                                          np.asarray(vectors, np.float32), labels)
            self._warming.discard(key)
            return found

    def ready(self, encoder: Encoder, codes: Sequence[str]) -> bool:
        return (encoder.name, tuple(codes)) in self._ready

    def warm(self, encoder: Encoder, codes: Sequence[str]) -> None:
        """Embed in a background thread (serving goes on; classification uses them once ready)."""
        key = (encoder.name, tuple(codes))
        with self._lock:
            if key in self._ready or key in self._warming:
                return
            self._warming.add(key)

        def run() -> None:
            try:
                self._embed(encoder, tuple(codes))
            except Exception:
                log.exception("embedding the classifier's reference examples failed")
                with self._lock:
                    self._warming.discard(key)

        threading.Thread(target=run, name="reference-examples", daemon=True).start()

    def labelled(self, encoder: Encoder, codes: Sequence[str], exclude: Iterable[str] = (),
                 wait: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        """(vectors, labels) with the `exclude`d ids unlabelled; None when not ready and not `wait`."""
        key = (encoder.name, tuple(codes))
        found = self._ready.get(key)
        if found is None:
            if not wait:
                self.warm(encoder, codes)
                return None
            found = self._embed(encoder, tuple(codes))
        excluded = set(exclude)
        labels = found.labels
        if excluded:
            drop = [i for i, rid in enumerate(found.ids) if rid in excluded]
            if drop:
                labels = labels.copy()
                labels[drop] = False
        return found.vectors, labels


REFERENCE = ReferenceExamples()
