"""Adapted encoder versions on disk: DATA_DIR/models/<version>/ and an ACTIVE_MODEL pointer.

A version is a complete sentence-transformers folder plus `manifest.json` (base model,
data watermark, pairs, hyper-parameters, metrics). It is written under a hidden temp
name and renamed into place, and ACTIVE_MODEL is replaced atomically, so a crash
leaves either the old pointer or a complete new version. ACTIVE_MODEL holding `base`
(or missing) means the configured base model serves. A rollback discards the version
it leaves, so a later rollback can never return to it.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from models.fsutil import (MANIFEST, complete_versions, fsync_tree, read_manifest, replace_synced,
                           write_atomic, write_synced)

ACTIVE = "ACTIVE_MODEL"
BASE = "base"
TMP_PREFIX = ".tmp-"
WORK_PREFIX = ".work-"
KEEP = 2  # the active version and the one before it (for rollback)


def models_root(data_dir: Path) -> Path:
    return Path(data_dir) / "models"


def ranking_root(data_dir: Path) -> Path:
    """Ranking weights learned from outcomes (indexer/adaptation/outcomes.py): versions of a
    manifest only, kept, activated and rolled back by the same functions as model versions."""
    return Path(data_dir) / "ranking"


def new_version_name() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("m%Y%m%dT%H%M%S%fZ-") + secrets.token_hex(3)


def temp_folder(root: Path, version: str) -> Path:
    """An empty hidden folder where the training writes the model before `commit_version`."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}{version}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def commit_version(root: Path, version: str, manifest: dict[str, Any]) -> Path:
    """Write the manifest into the temp folder, fsync everything, rename it into place."""
    tmp = root / f"{TMP_PREFIX}{version}"
    manifest = {**manifest, "version": version}
    write_synced(tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, default=str))
    fsync_tree(tmp, files=True)  # the trainer's files were written without fsync
    final = root / version
    replace_synced(tmp, final)
    return final



def active_version(root: Path) -> str | None:
    """The active adapted version, or None when the base model serves."""
    try:
        name = (root / ACTIVE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if name and name != BASE and read_manifest(root / name) is not None:
        return name
    return None


def version_path(root: Path, version: str) -> Path:
    return root / version


def activate(root: Path, version: str | None) -> None:
    """Point ACTIVE_MODEL at `version` (None: the base model), then prune old versions."""
    root.mkdir(parents=True, exist_ok=True)
    if version is not None:
        if read_manifest(root / version) is None:
            raise FileNotFoundError(f"model version {version} is not complete")
    write_atomic(root / ACTIVE, version or BASE)
    prune(root)


def previous_version(root: Path) -> str | None:
    """The version a rollback returns to (the newest one older than the active one);
    None means the base model."""
    active = active_version(root)
    if active is None:
        return None
    older = [v for v in complete_versions(root) if v < active]
    return older[-1] if older else None


def prune(root: Path) -> list[str]:
    """Keep the active version and the newest KEEP versions."""
    active = active_version(root)
    keep = set(complete_versions(root)[-KEEP:]) | ({active} if active else set())
    removed = []
    for name in complete_versions(root):
        if name not in keep:
            shutil.rmtree(root / name, ignore_errors=True)
            removed.append(name)
    return removed


def discard(root: Path, version: str) -> None:
    """Remove a version (or its temp folder) that was never activated."""
    for path in (root / version, root / f"{TMP_PREFIX}{version}", root / f"{WORK_PREFIX}{version}"):
        shutil.rmtree(path, ignore_errors=True)


def cleanup(root: Path) -> list[str]:
    """Remove what an interrupted adaptation left: temp and work folders, folders without a manifest."""
    removed: list[str] = []
    if not root.exists():
        return removed
    for p in root.iterdir():
        if p.is_dir() and (p.name.startswith((TMP_PREFIX, WORK_PREFIX)) or read_manifest(p) is None):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    (root / f"{ACTIVE}.tmp").unlink(missing_ok=True)
    return removed


def list_versions(root: Path) -> list[dict[str, Any]]:
    """Manifests of the kept versions, newest first, each with an `active` flag."""
    active = active_version(root)
    out = []
    for name in reversed(complete_versions(root)):
        manifest = read_manifest(root / name) or {}
        out.append({**manifest, "version": name, "active": name == active})
    return out


def with_lock(root: Path, fn: Callable[[], Any]) -> Any:
    """Run `fn` holding an exclusive, non-blocking lock on the models folder (one adapter at a time)."""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".adapt.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ModelBusy("another adaptation or rollback is running on this data dir") from exc
        try:
            return fn()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class ModelBusy(RuntimeError):
    """Another process or job holds the models folder."""
