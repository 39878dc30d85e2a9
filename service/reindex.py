"""Reindex jobs and index status, shared by the admin API and the `scenematch` CLI."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from indexer.retrieval.engine import SearchEngine
from indexer.retrieval.versions import active_version, index_root, read_manifest
from models import repository
from models.database import session_scope
from service.jobs import JobContext, JobFn
from service.state import AppState

MODES = ("full", "incremental")
KIND_LABELS = {"need": "needs", "capability": "capabilities", "scenario": "scenarios"}


def job_kind(mode: str) -> str:
    """Job kind (and exclusive key): full and incremental rebuilds are tracked apart."""
    return f"reindex_{mode}"


def reindex_job(engine: SearchEngine, mode: str,
                on_progress: Callable[[float, str], None] | None = None) -> JobFn:
    """The job function for a full rebuild or an incremental fold of `engine`."""

    def report(ctx: JobContext, fraction: float, message: str) -> None:
        ctx.progress(fraction, message)
        if on_progress is not None:
            on_progress(fraction, message)

    def full(ctx: JobContext) -> dict[str, Any]:
        previous = engine.snapshot.version if engine.snapshot else None
        version = engine.rebuild(progress=lambda f, m: report(ctx, f, m))
        return {"mode": "full", "version": version, "previous_version": previous,
                **_summary(engine)}

    def incremental(ctx: JobContext) -> dict[str, Any]:
        report(ctx, 0.05, "applying stored changes")
        applied = engine.refresh()
        snap = engine.snapshot
        if snap is None:
            raise RuntimeError("no index is loaded; run a full rebuild first")
        pending = sum(len(s) for s in snap.delta.values()) + sum(len(t) for t in snap.tombstones.values())
        previous = snap.version
        if pending == 0:
            report(ctx, 1.0, "nothing to fold: the active version is current")
            return {"mode": "incremental", "version": previous, "previous_version": previous,
                    "folded": False, "changes_applied": applied, **_summary(engine)}
        report(ctx, 0.3, f"folding {pending} changed records into a new version")
        version = engine.fold()
        report(ctx, 1.0, "done")
        return {"mode": "incremental", "version": version, "previous_version": previous,
                "folded": True, "changes_applied": applied, **_summary(engine)}

    return full if mode == "full" else incremental


def _summary(engine: SearchEngine) -> dict[str, Any]:
    snap = engine.snapshot
    return {"counts": snap.counts() if snap else {}}


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def age_seconds(manifest: dict[str, Any], fallback: float | None = None) -> float | None:
    built = parse_time(manifest.get("built_at"))
    if built is None:
        return None if fallback is None else max(0.0, time.time() - fallback)
    return max(0.0, (dt.datetime.now(dt.timezone.utc) - built).total_seconds())


def manifest_status(version: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """What the manifest on disk says about a version (no model or segments needed)."""
    age = age_seconds(manifest)
    return {
        "version": version,
        "built_at": manifest.get("built_at"),
        "age_s": None if age is None else round(age, 1),
        "mode": manifest.get("mode"),
        "model": manifest.get("model"),
        "dim": manifest.get("dim"),
        "build_seconds": manifest.get("build_seconds"),
        "indexed_counts": manifest.get("counts", {}),
        "index_types": {"dense": manifest.get("dense", {}), "lexical": manifest.get("lexical", {})},
        "watermark": manifest.get("watermark", 0),
    }


def stored_status(state: AppState) -> dict[str, Any]:
    with session_scope(state.sessions) as session:
        return {"stored_counts": {label: repository.count(session, kind) for kind, label in KIND_LABELS.items()},
                "last_change_seq": repository.last_change_seq(session)}


def live_status(state: AppState, engine: SearchEngine) -> dict[str, Any]:
    """The served snapshot: active version plus the live delta of changes since it was built."""
    snap = engine.snapshot
    if snap is None:
        raise RuntimeError("no index is loaded")
    status = manifest_status(snap.version, snap.manifest)
    if status["age_s"] is None:
        status["age_s"] = round(max(0.0, time.time() - snap.loaded_at), 1)
    stored = stored_status(state)
    status.update(
        counts=snap.counts(),
        delta={"records": {KIND_LABELS.get(k, k): len(s) for k, s in snap.delta.items()},
               "hidden_base_rows": {KIND_LABELS.get(k, k): int(len(t)) for k, t in snap.tombstones.items()}},
        served_watermark=snap.watermark,
        pending_changes=max(0, stored["last_change_seq"] - snap.watermark),
        stored_counts=stored["stored_counts"],
        rebuilding=engine.rebuilding,
        running_jobs={mode: state.jobs.running(job_kind(mode)) for mode in MODES},
        last_refresh_error=engine.last_refresh_error,
        vector_backend=vector_backend(state),
        manifest=snap.manifest,
    )
    matcher = state.extras.get("matcher")
    if matcher is not None:  # the signal weights this index is ranked with
        ranking = matcher.ranking(snap)
        status["ranking"] = {"weights": ranking.weights, "bias": ranking.bias,
                             "source": matcher.rankings.source(snap.model)}
        if ranking.untagged is not None:  # for pairs with a side whose domains the client did not give
            status["ranking"]["untagged"] = {"weights": ranking.untagged.weights, "bias": ranking.untagged.bias}
    auto = state.extras.get("auto_adapter")
    if auto is not None:  # when the next adaptation starts on its own, and what the last one decided
        status["auto_adapt"] = auto.status()
    return status


def vector_backend(state: AppState) -> dict[str, Any]:
    """Which engine holds the served versions' vectors (never the URI's credentials or paths)."""
    settings = state.settings
    if settings.vector_backend != "milvus":
        return {"name": "faiss", "deployment": "in-process"}
    server = settings.resolved_milvus_uri.startswith(("http://", "https://", "tcp://", "grpc://"))
    return {"name": "milvus", "deployment": "server" if server else "lite"}


def disk_status(data_dir: Path) -> dict[str, Any] | None:
    """The active version as written on disk (for the CLI, which has no loaded engine)."""
    root = index_root(data_dir)
    version = active_version(root)
    manifest = read_manifest(root / version) if version else None
    if version is None or manifest is None:
        return None
    return {**manifest_status(version, manifest), "manifest": manifest}
