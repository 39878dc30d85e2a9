"""Several engines (one per replica) on one database and one shared data dir.

Two things make a replica's engine a good neighbour:
- `BuilderRole`: one builder of index versions at a time across every replica (a PostgreSQL
  advisory lock, or a file lock beside a SQLite database: models/locks.py). Full builds, folds
  and the clean-up of a crashed build's leftovers all need it, so no replica deletes the
  temp folder another one is writing into.
- `ActivationFollower`: reads the ACTIVE pointer on the shared volume, not this process's
  memory, and loads the version another replica activated. The stored change log is read
  from the database by every replica's refresher already (engine.refresh), so writes through
  any replica reach all of them.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.retrieval import builder
from indexer.retrieval.segment import Segment
from indexer.retrieval.versions import active_version, read_manifest
from models.locks import ProcessLock

log = logging.getLogger("scenematch.replicas")


class BuildRunningElsewhere(RuntimeError):
    """Another replica holds the builder role."""


class BuilderRole:
    """The cross-replica half of "one build at a time"; without a lock, a lone process."""

    def __init__(self, lock: ProcessLock | None = None):
        self.lock = lock

    @contextmanager
    def hold(self, wait_s: float = 0.0) -> Iterator[None]:
        """Be the builder for the block, waiting up to `wait_s`; BuildRunningElsewhere otherwise."""
        if self.lock is None:
            yield
            return
        taken = self.lock.acquire(wait_s) if wait_s > 0 else self.lock.try_acquire()
        if not taken:
            raise BuildRunningElsewhere("an index build is already running on another replica")
        try:
            yield
        finally:
            self.lock.release()

    @contextmanager
    def attempt(self) -> Iterator[bool]:
        """Be the builder for the block if nobody else is; yields whether this process is."""
        if self.lock is None:
            yield True
            return
        if not self.lock.try_acquire():
            yield False
            return
        try:
            yield True
        finally:
            self.lock.release()


@dataclass(frozen=True)
class Activation:
    version: str
    manifest: dict[str, Any]
    segments: dict[str, Segment]


class ActivationFollower:
    """Notices that the shared ACTIVE pointer names another version than the one served."""

    def __init__(self, root: Path):
        self.root = root
        self._skipped: str | None = None  # a version this encoder cannot serve, logged once

    def pending(self, served_version: str | None, encoder_name: str) -> Activation | None:
        """The newly active version, loaded, if it differs from `served_version` and was
        built with `encoder_name` (another model's version is served after a restart)."""
        version = active_version(self.root)
        if version is None or version == served_version or version == self._skipped:
            return None
        manifest = read_manifest(self.root / version)
        if manifest is None:
            return None
        if manifest.get("model") != encoder_name:
            self._skipped = version
            log.warning("active index %s was built with %s; this replica serves %s until it restarts",
                        version, manifest.get("model"), encoder_name)
            return None
        try:
            segments = builder.load_segments(self.root / version)
        except FileNotFoundError:  # pruned by a newer activation meanwhile: the next tick sees that one
            return None
        return Activation(version, manifest, segments)
