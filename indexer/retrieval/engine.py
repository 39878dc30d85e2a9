"""The served index: an immutable snapshot swapped atomically, kept fresh by a refresher.

A snapshot is the active version's base segments, minus tombstoned rows, plus a delta
segment of every record changed since that version was built. Queries take the current
snapshot once and use it to the end, so a swap never disturbs a request in flight.
"""
from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from indexer.retrieval import builder, cases, classify
from indexer.retrieval.documents import KINDS
from indexer.retrieval.embedding import Encoder
from indexer.retrieval.replicas import ActivationFollower, BuilderRole, BuildRunningElsewhere
from indexer.retrieval.segment import Segment
from indexer.retrieval.versions import activate, active_version, cleanup, index_root, prune, read_manifest
from models import repository
from models.database import session_scope

log = logging.getLogger("scenematch.index")
# Postgres sequences can commit out of order: re-read this many recent changes each time
# (re-applying a change is idempotent and its vectors come from the cache).
RESCAN = 200
# Past this many changed records the delta is folded into a new version.
FOLD_AT = 2000
# How long a starting replica waits for another replica's first build rather than building too.
FIRST_BUILD_WAIT_S = 3600.0
BUILDER_GRACE_S = 5.0


@dataclass(frozen=True)
class Snapshot:
    version: str
    model: str
    manifest: dict[str, Any]
    base: dict[str, Segment]
    delta: dict[str, Segment]
    tombstones: dict[str, np.ndarray]  # base rows hidden because they changed or were deleted
    watermark: int
    loaded_at: float = field(default_factory=time.time)
    # The encoder that built this snapshot: queries must be embedded by it, not by whatever
    # encoder the engine holds when they run (an adaptation swaps both together).
    encoder: Encoder | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        hidden = {k: frozenset(v.tolist()) for k, v in self.tombstones.items()}
        object.__setattr__(self, "_hidden", hidden)

    def segments(self, kind: str) -> list[tuple[Segment, np.ndarray | None]]:
        return [(self.base[kind], self.tombstones[kind]), (self.delta[kind], None)]

    def locate(self, kind: str, record_id: str) -> tuple[Segment, int] | None:
        delta = self.delta[kind]
        if record_id in delta.row_of:
            return delta, delta.row_of[record_id]
        base = self.base[kind]
        row = base.row_of.get(record_id)
        if row is None or row in self._hidden[kind]:  # type: ignore[attr-defined]
            return None
        return base, row

    def counts(self) -> dict[str, int]:
        out = {}
        for kind in KINDS:
            alive = len(self.base[kind]) - len(self.tombstones[kind]) + len(self.delta[kind])
            out[builder.SEGMENT_DIRS[kind]] = int(alive)
        return out


class SearchEngine:
    def __init__(self, data_dir: Path, sessions: sessionmaker[Session], encoder: Encoder,
                 tokenizer: Any, domain_codes: list[str], builder_role: BuilderRole | None = None,
                 dense_kind: str = "auto"):
        self.data_dir, self.sessions, self.encoder = data_dir, sessions, encoder
        # The dense index of written versions ("milvus": a collection per version); the live
        # delta stays an in-process FAISS index, rebuilt on every refresh.
        self.dense_kind = dense_kind
        # Other replicas may share the data dir: one builder among them, and follow their activations.
        self.builder_role = builder_role or BuilderRole()
        self.follower = ActivationFollower(index_root(data_dir))
        self.tokenizer, self.domain_codes = tokenizer, domain_codes
        self._snapshot: Snapshot | None = None
        self._touched: dict[str, set[str]] = {k: set() for k in KINDS}
        self._seen_seq = 0
        self._swap_lock = threading.Lock()  # one writer of the snapshot at a time
        self._build_lock = threading.Lock()  # one full rebuild at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_refresh_error: str | None = None

    # ---- lifecycle ------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def root(self) -> Path:
        return index_root(self.data_dir)

    def open(self, build_if_missing: bool = True) -> bool:
        """Load the active version (cleaning crash leftovers); build one if there is none."""
        with self.builder_role.attempt() as builder_here:
            if builder_here:  # otherwise the folders belong to a build running on another replica
                removed = cleanup(self.root)
                if removed:
                    log.warning("removed unfinished index folders: %s", removed)
                # A kill between a version's rename into place and its activation leaves one
                # complete version too many; activation would have pruned it.
                prune(self.root)
                self._release_unreferenced()
        if self._load_active():
            return True
        if not build_if_missing:
            return False
        # Replicas starting together build once: the others wait, then load that version.
        with self._build_lock, self.builder_role.hold(wait_s=FIRST_BUILD_WAIT_S):
            if not self._load_active(quiet=True):
                self._rebuild_as_builder()
        return True

    def _load_active(self, quiet: bool = False) -> bool:
        version = active_version(self.root)
        manifest = read_manifest(self.root / version) if version else None
        if manifest is not None and manifest.get("model") == self.encoder.name:
            segments = builder.load_segments(self.root / version)
            with self._swap_lock:
                self._install_full(version, manifest, segments)
            self.refresh()
            return True
        if manifest is not None and not quiet:
            log.warning("active index %s was built with %s, not %s: rebuilding", version,
                        manifest.get("model"), self.encoder.name)
        return False

    def follow(self) -> bool:
        """Serve the version another replica activated, if any (called by the refresher)."""
        if self.rebuilding or self._snapshot is None:
            return False
        served = self._snapshot
        new = self.follower.pending(served.version, self.encoder.name)
        if new is None:
            return False
        with self._swap_lock:
            if self._snapshot is not served or self.rebuilding:  # this process swapped meanwhile
                return False
            self._install_full(new.version, new.manifest, new.segments)
        log.info("following the active index %s (activated by another replica)", new.version)
        self.refresh()
        return True

    def start_refresher(self, interval: float) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(interval)
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    self.follow()
                    self.refresh()
                    self.last_refresh_error = None
                except Exception as exc:  # keep serving; the next tick retries
                    self.last_refresh_error = f"{type(exc).__name__}: {exc}"
                    log.warning("index refresh failed: %s", self.last_refresh_error)

        self._thread = threading.Thread(target=loop, name="index-refresher", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Ask for a refresh now (called after every write)."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- building -------------------------------------------------------------------
    def rebuild(self, progress: builder.Progress | None = None,
                dense_kind: str | None = None) -> str:
        """Full rebuild from the database; the current snapshot serves until the swap."""
        if not self._build_lock.acquire(blocking=False):
            raise RuntimeError("a full rebuild is already running")
        try:
            # A few seconds' grace: a builder that just died is freed when its database session ends.
            with self.builder_role.hold(wait_s=BUILDER_GRACE_S):
                return self._rebuild_as_builder(progress, dense_kind or self.dense_kind)
        finally:
            self._build_lock.release()

    def _rebuild_as_builder(self, progress: builder.Progress | None = None,
                            dense_kind: str | None = None) -> str:
        version, segments = builder.build_full_version(
            self.data_dir, self.sessions, self.encoder, self.tokenizer, self.domain_codes,
            progress=progress, dense_kind=dense_kind or self.dense_kind)
        manifest = read_manifest(self.root / version) or {}
        with self._swap_lock:
            self._install_full(version, manifest, segments)
        self._release_unreferenced()
        self.refresh()
        return version

    def _release_unreferenced(self) -> None:
        """As the builder: drop the external collections of versions no longer on disk."""
        if self.dense_kind == "milvus":
            from indexer.retrieval import milvus  # only where Milvus is configured

            dropped = milvus.drop_unreferenced(self.root)
            if dropped:
                log.info("dropped %d Milvus collections of removed versions", len(dropped))

    def fold(self) -> str:
        """Write the served snapshot (base + delta) as a new version, without re-embedding."""
        with self.builder_role.hold(), self._swap_lock:
            snap = self._require()
            keep = {}
            for kind in KINDS:
                mask = np.ones(len(snap.base[kind]), dtype=bool)
                mask[snap.tombstones[kind]] = False
                keep[kind] = mask
            version, segments = builder.fold_version(
                self.data_dir, snap.base, keep, snap.delta, self.encoder, snap.watermark,
                dense_kind=self.dense_kind)
            manifest = read_manifest(self.root / version) or {}
            self._touched = {k: set() for k in KINDS}
            self._install(version, manifest, segments)
            self._release_unreferenced()
            return version

    def switch_encoder(self, encoder: Encoder, progress: builder.Progress | None = None,
                       accept: Callable[[Snapshot], bool] | None = None,
                       before_swap: Callable[[], None] | None = None,
                       wait_s: float = 3600.0) -> str | None:
        """Rebuild everything with `encoder`, then serve that index and that encoder together.

        The current snapshot (and encoder) serve until the swap. `accept(candidate)` may veto
        the new snapshot before anything changes (its version is then deleted and None is
        returned); `before_swap` runs under the swap lock just before the swap (to record the
        new model as active); if it fails, nothing changes. Waits up to `wait_s` for a
        rebuild already running.
        """
        if not self._build_lock.acquire(timeout=wait_s):
            raise RuntimeError("a full rebuild is still running")
        try:
            with self.builder_role.hold(wait_s=wait_s):
                return self._switch_as_builder(encoder, progress, accept, before_swap)
        finally:
            self._build_lock.release()

    def _switch_as_builder(self, encoder: Encoder, progress: builder.Progress | None,
                           accept: Callable[[Snapshot], bool] | None,
                           before_swap: Callable[[], None] | None) -> str | None:
        version, segments = builder.build_full_version(
            self.data_dir, self.sessions, encoder, self.tokenizer, self.domain_codes,
            progress=progress, activate_version=False, dense_kind=self.dense_kind)
        manifest = read_manifest(self.root / version) or {}
        if accept is not None:
            empty = {k: builder.segment_from(k, builder.embed_docs([], encoder, self.tokenizer),
                                             self.domain_codes, reference=segments[k]) for k in KINDS}
            candidate = Snapshot(version, manifest.get("model", encoder.name), manifest, segments,
                                 empty, {k: np.zeros(0, np.int64) for k in KINDS},
                                 int(manifest.get("watermark", 0)), encoder=encoder)
            if not accept(candidate):
                shutil.rmtree(self.root / version, ignore_errors=True)
                return None
        with self._swap_lock:
            if before_swap is not None:
                before_swap()
            activate(self.root, version)
            self.encoder = encoder
            self._install_full(version, manifest, segments)
        self.refresh()
        return version

    @property
    def rebuilding(self) -> bool:
        return self._build_lock.locked()

    # ---- incremental refresh ----------------------------------------------------------
    def refresh(self) -> int:
        """Apply stored changes since the last refresh; returns how many records changed."""
        with self._swap_lock:
            snap = self._snapshot
            if snap is None:
                return 0
            with session_scope(self.sessions) as session:
                changes = repository.changes_since(session, max(0, self._seen_seq - RESCAN))
            base_watermark = int(snap.manifest.get("watermark", 0))
            fresh = [c for c in changes if c.seq > base_watermark]
            new = [c for c in fresh if c.seq > self._seen_seq]
            if not new:
                return 0
            for c in fresh:
                self._touched[c.kind].add(c.record_id)
            self._seen_seq = max(c.seq for c in changes)
            delta, tombstones, embedded = {}, {}, {}
            for kind in KINDS:
                ids = sorted(self._touched[kind])
                docs = builder.load_docs(self.sessions, kind, self.tokenizer, ids)
                embedded[kind] = builder.embed_docs(docs, self.encoder, self.tokenizer)
                base = snap.base[kind]
                tombstones[kind] = np.array(
                    sorted(base.row_of[i] for i in ids if i in base.row_of), dtype=np.int64)
            # Records without a domain get a predicted one; the served base is the example set.
            served = [(k, snap.base[k], tombstones[k]) for k in KINDS]
            classify.classify_unlabelled(
                embedded, self.encoder, self.tokenizer, self.sessions,
                lambda: classify.segment_examples(self.sessions, served), wait_for_reference=False)
            for kind in KINDS:
                delta[kind] = builder.segment_from(kind, embedded[kind], self.domain_codes,
                                                   reference=snap.base[kind])
            fresh = Snapshot(snap.version, snap.model, snap.manifest, snap.base, delta,
                             tombstones, self._seen_seq, encoder=snap.encoder)
            cases.table_of(fresh)  # built here, not by the first request after the swap
            self._snapshot = fresh
            n_touched = sum(len(v) for v in self._touched.values())
        if n_touched >= FOLD_AT and not self.rebuilding:
            try:
                self.fold()
            except BuildRunningElsewhere:  # that replica's new version will carry these changes
                pass
        return len(new)

    # ---- internals ------------------------------------------------------------------
    def _install_full(self, version: str, manifest: dict[str, Any], segments: dict[str, Segment]) -> None:
        """Serve a version built in full from the database: changes before its watermark are in it."""
        self._touched = {k: set() for k in KINDS}
        self._seen_seq = int(manifest.get("watermark", 0))
        self._install(version, manifest, segments)

    def _install(self, version: str, manifest: dict[str, Any], segments: dict[str, Segment]) -> None:
        empty = {k: builder.segment_from(k, builder.embed_docs([], self.encoder, self.tokenizer),
                                         self.domain_codes, reference=segments[k]) for k in KINDS}
        watermark = int(manifest.get("watermark", 0))
        self._seen_seq = max(self._seen_seq, watermark)
        snap = Snapshot(version, manifest.get("model", self.encoder.name), manifest,
                        segments, empty, {k: np.zeros(0, np.int64) for k in KINDS},
                        watermark, encoder=self.encoder)
        cases.table_of(snap)  # the case library is ready before the first request on this snapshot
        self._snapshot = snap
        for kind, segment in segments.items():  # e.g. a Milvus alias names the served collection
            segment.dense.serve_as(builder.SEGMENT_DIRS[kind])
        # A base segment (~100k token lists at 100k records) lives until the next full build,
        # like the libraries loaded before it; a full collection traversed them all (0.4-0.7 s
        # pauses at 100k). Collect the build's garbage once, then leave the survivors out.
        gc.collect()
        gc.freeze()

    def _require(self) -> Snapshot:
        if self._snapshot is None:
            raise RuntimeError("no index is loaded")
        return self._snapshot
