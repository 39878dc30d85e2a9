"""Index versions on disk: DATA_DIR/index/<version>/ with a manifest, and an ACTIVE pointer.

A version is written to a hidden temp folder, fsynced, then renamed into place; the
ACTIVE file is replaced atomically afterwards. A crash at any point therefore leaves
either the old pointer (previous version serves) or the new one (complete version),
and `cleanup` removes whatever half-written folder the crash left behind.
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

ACTIVE = "ACTIVE"
TMP_PREFIX = ".tmp-"
KEEP = 2  # the active version and the one before it (for rollback)


def index_root(data_dir: Path) -> Path:
    return data_dir / "index"


def new_version_name() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("v%Y%m%dT%H%M%S%fZ-") + secrets.token_hex(3)


def write_version(root: Path, version: str, write: Callable[[Path], dict[str, Any]]) -> Path:
    """Write a version atomically; `write(folder)` fills the folder and returns the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}{version}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        manifest = write(tmp)
        manifest = {**manifest, "version": version}
        write_synced(tmp / MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2, default=str))
        fsync_tree(tmp, files=False)  # the segments fsync their own files
        final = root / version
        replace_synced(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise



def active_version(root: Path) -> str | None:
    pointer = root / ACTIVE
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    if name and read_manifest(root / name) is not None:
        return name
    return None


def activate(root: Path, version: str) -> None:
    """Point ACTIVE at `version` (atomic replace), then drop versions beyond the last KEEP."""
    if read_manifest(root / version) is None:
        raise FileNotFoundError(f"index version {version} is not complete")
    write_atomic(root / ACTIVE, version)
    prune(root)


def prune(root: Path) -> None:
    active = active_version(root)
    versions = complete_versions(root)
    keep = set(versions[-KEEP:]) | ({active} if active else set())
    for name in versions:
        if name not in keep:
            shutil.rmtree(root / name, ignore_errors=True)


def cleanup(root: Path) -> list[str]:
    """Remove what an interrupted build left: temp folders and versions without a manifest."""
    removed = []
    if not root.exists():
        return removed
    for p in root.iterdir():
        if p.is_dir() and (p.name.startswith(TMP_PREFIX) or read_manifest(p) is None):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    (root / f"{ACTIVE}.tmp").unlink(missing_ok=True)
    return removed
