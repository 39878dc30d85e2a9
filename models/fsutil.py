"""Crash-safe file writes shared by the index, adapted-model and default-model stores.

The goal is kill -9 / power-loss safety: after a crash a reader finds either the old
state or the complete new one, never a half-written file behind a live name. The recipe
is always the same: write under a temporary name, fsync the data, `os.replace` onto the
live name (atomic on POSIX), then fsync the parent folder, because a create or rename
is only on disk once the folder holding the entry is.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# A version folder (an index version, an adapted model) is complete once its manifest is
# readable: it is written last, inside the temp folder, before the folder is renamed into place.
MANIFEST = "manifest.json"


def fsync_path(path: Path) -> None:
    """fsync a file or a folder by name.

    For a file: its data reaches the disk even when a library wrote it without fsyncing
    (numpy, safetensors). For a folder: its entries (creates, renames) reach the disk.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that the files created or renamed in it survive a crash."""
    fsync_path(path)


def write_synced(path: Path, data: str | bytes) -> None:
    """Write `data` (str as UTF-8) and fsync it before returning.

    Not atomic: use it inside a temp folder that is renamed into place later, or through
    `write_atomic` when the name is live.
    """
    with open(path, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())


def replace_synced(src: Path, dst: Path) -> None:
    """`os.replace(src, dst)` and fsync dst's folder, so the rename itself survives a crash."""
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace a small file (a pointer such as ACTIVE) so a crash leaves the old or the new
    content, never a mix: write `<name>.tmp` beside it, fsync, rename over, fsync the folder.

    The temp name is fixed so that the stores' `cleanup` can remove one a crash left.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp")
    write_synced(tmp, data)
    replace_synced(tmp, path)


def fsync_tree(folder: Path, *, files: bool) -> None:
    """fsync a folder and every folder below it (and first every file when `files`),
    before it is renamed into place: the rename must not reach the disk before the
    entries (and data) it publishes. `files=False` is for trees whose writers already
    fsynced each file."""
    folder = Path(folder)
    if files:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                fsync_path(path)
    for sub in [folder, *[p for p in folder.rglob("*") if p.is_dir()]]:
        fsync_dir(sub)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None for a folder a crash left incomplete."""
    try:
        return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def complete_versions(root: Path) -> list[str]:
    """Version folders with a readable manifest, oldest first (names sort by creation time)."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and read_manifest(p) is not None)
