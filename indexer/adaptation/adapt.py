"""Encoder adaptation: learn the deployment's corpus and its users' feedback, safely.

One run: collect pairs (indexer.adaptation.data) → train a candidate from the base model in a
child process (indexer.adaptation.train) → score candidate and serving model on held-out data
(indexer.adaptation.evaluate) → if it does not lose on dense retrieval, rebuild the index with it
while the old index serves → if the shipped ranking of that index does not lose either,
commit it as a model version (models.model_versions) and swap encoder, index and
ACTIVE_MODEL together. Rollback re-activates the previous version
(or the base model) the same way. Each run starts from the base model, so a version is
reproducible from its manifest and errors never compound.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.adaptation import data as adapt_data, evaluate as adapt_eval, weights as adapt_ranking
from indexer.adaptation.data import AdaptConfig, AdaptError
from indexer.ranking.hybrid import RankingModel, RankingModels
from indexer.retrieval.embedding import (
    CachedEncoder,
    Encoder,
    _folder_identity,
    load_like,
)
from indexer.retrieval.engine import SearchEngine
from models import model_versions as mv
from models.embedding_model import (
    DEFAULT_MODEL_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    ensure_default_model,
)

log = logging.getLogger("scenematch.adapt")
Progress = Callable[[float, str], None]
# Loading the model and saving ~470 MB come on top of the training budget.
CHILD_GRACE_S = 600.0
__all__ = ["AdaptConfig", "AdaptError", "BaseModel", "NothingToRollBack", "adapt", "rollback",
           "serving_model"]


class NothingToRollBack(AdaptError):
    """The base model is active: there is no earlier model to return to."""


@dataclass(frozen=True)
class BaseModel:
    """The configured model adaptation starts from: where it loads from and its identity."""

    path: str
    name: str

    @classmethod
    def resolve(cls, embedding_model: str | None, cache_dir: Path) -> "BaseModel":
        if not embedding_model or embedding_model == DEFAULT_MODEL_NAME:
            folder = ensure_default_model(Path(cache_dir))
            return cls(str(folder), _folder_identity(folder))
        folder = Path(embedding_model).expanduser()
        if folder.is_dir():
            return cls(str(folder), _folder_identity(folder))
        return cls(embedding_model, embedding_model)


def serving_model(data_dir: Path, embedding_model: str | None, cache_dir: Path) -> str | None:
    """What the service should load: the active adapted version if it was trained from the
    configured base model, else the configured model itself."""
    root = mv.models_root(data_dir)
    version = mv.active_version(root)
    if version is None:
        return embedding_model
    manifest = mv.read_manifest(root / version) or {}
    base = BaseModel.resolve(embedding_model, cache_dir)
    if manifest.get("base_model") != base.name:
        log.warning("active model version %s was trained from %s, not the configured %s: "
                    "serving the configured model", version, manifest.get("base_model"), base.name)
        return embedding_model
    return str(mv.version_path(root, version))


def _with_cache(inner: Encoder, like: Encoder) -> Encoder:
    """Wrap `inner` in the same embedding cache as the engine's encoder, if it has one."""
    cache = getattr(like, "cache", None)
    return CachedEncoder(inner, cache) if cache is not None else inner


def _report(progress: Progress | None, start: float, span: float) -> Callable[[float, str], None]:
    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(start + span * max(0.0, min(1.0, fraction)), message)
    return report


# ---- training in a child process ------------------------------------------------------
def run_training(work: Path, out: Path, config: dict[str, Any], pairs: list[dict[str, str]],
                 progress: Callable[[float, str], None], timeout_s: float) -> dict[str, Any]:
    """Train in `python -m indexer.adaptation.train`; raises AdaptError if it fails or is killed."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    with (work / "pairs.jsonl").open("w", encoding="utf-8") as fh:
        for pair in pairs:
            fh.write(json.dumps(pair, ensure_ascii=False) + "\n")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(work / "datasets"), "PYTHONUNBUFFERED": "1"}
    stderr_path = work / "stderr.log"
    done: dict[str, Any] | None = None
    timed_out = threading.Event()
    with stderr_path.open("w", encoding="utf-8") as err:
        child = subprocess.Popen([sys.executable, "-m", "indexer.adaptation.train", str(work), str(out)],
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                 cwd=str(Path(__file__).resolve().parents[2]))
        (work / "child.pid").write_text(str(child.pid), encoding="utf-8")  # for operators

        def kill() -> None:
            timed_out.set()
            child.kill()

        watchdog = threading.Timer(timeout_s, kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "step" and event.get("max_steps"):
                    progress(event["step"] / event["max_steps"],
                             f"训练 training step {event['step']}/{event['max_steps']}")
                elif event.get("event") == "done":
                    done = event
            code = child.wait()
        finally:
            watchdog.cancel()
            if child.poll() is None:  # the parent is failing (e.g. a progress callback raised)
                child.kill()
                child.wait()
    if timed_out.is_set():
        raise AdaptError(f"training exceeded its time limit ({timeout_s:.0f} s) and was stopped")
    if code != 0 or done is None:
        tail = [ln for ln in stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
                if ln.strip()]
        cause = tail[-1][:500] if tail else "no error output"
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        raise AdaptError(f"training process failed ({how}): {cause}")
    done.pop("event", None)
    return done


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _write_identity(folder: Path, name: str) -> None:
    """The model folder's own manifest: it gives the encoder a stable name (cache keys,
    index manifests) that does not change when the folder is renamed into place."""
    identity = {"format_version": FORMAT_VERSION, "name": name, "fingerprint": _fingerprint(folder)}
    (folder / MANIFEST_NAME).write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")


# ---- one adaptation run -------------------------------------------------------------------
def adapt(engine: SearchEngine, base: BaseModel, config: AdaptConfig,
          progress: Progress | None = None) -> dict[str, Any]:
    """Train, judge and (if it does not lose) activate a new model version; returns the outcome."""
    root = mv.models_root(engine.data_dir)
    return mv.with_lock(root, lambda: _adapt_locked(engine, base, config, root, progress))


def _adapt_locked(engine: SearchEngine, base: BaseModel, config: AdaptConfig, root: Path,
                  progress: Progress | None) -> dict[str, Any]:
    started = time.monotonic()
    removed = mv.cleanup(root)
    if removed:
        log.warning("removed unfinished model folders: %s", removed)
    _report(progress, 0.0, 1.0)(0.01, "收集训练数据 collecting pairs")
    data = adapt_data.collect(engine.sessions, engine.tokenizer, config)
    timings = {"collect_s": round(time.monotonic() - started, 1)}
    if len(data.pairs) < 2 * config.batch_size:
        raise AdaptError(
            f"not enough training pairs: {len(data.pairs)} (need at least {2 * config.batch_size}); "
            f"labelled pairs: {data.counts['label_pairs']} from feedback and seed labels"
            + ("" if config.record_pairs != "none" else
               "; collect more feedback, or also train on the records' own pairs (record_pairs)"))
    version = mv.new_version_name()
    out = mv.temp_folder(root, version)
    work = root / f"{mv.WORK_PREFIX}{version}"
    active_name = engine.encoder.name
    try:
        mark = time.monotonic()
        training_config = config.training_config(base.path)
        if training_config["gradient_checkpointing"] is None:
            # Labelled pairs are whole record texts: memory, not speed, limits them.
            training_config["gradient_checkpointing"] = data.counts["label_pairs"] > 0
        training = run_training(work, out, training_config, data.pairs,
                                _report(progress, 0.03, 0.55),
                                timeout_s=config.max_seconds + CHILD_GRACE_S)
        timings["train_process_s"] = round(time.monotonic() - mark, 1)
        mark = time.monotonic()
        _write_identity(out, f"{base.name}+{version}")
        # The serving backend's own copy (an ONNX graph is exported here, in the job).
        candidate = _with_cache(load_like(engine.encoder, out), engine.encoder)
        _report(progress, 0.58, 0.0)(0.0, "评估 evaluating the serving model")
        active_metrics = adapt_eval.evaluate_all(engine.encoder, data.eval_sets,
                                                 _report(progress, 0.58, 0.04))
        candidate_metrics = adapt_eval.evaluate_all(candidate, data.eval_sets,
                                                    _report(progress, 0.62, 0.13))
        tolerances = {"general": config.general_tolerance}
        decision = adapt_eval.guard(candidate_metrics, active_metrics, config.tolerance, tolerances)
        timings["evaluate_s"] = round(time.monotonic() - mark, 1)
        manifest = {
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "base_model": base.name, "base_path": base.path, "model": candidate.name,
            "trained_against": active_name,
            "data": {"watermark": data.watermark, "feedback_seq": data.feedback_seq,
                     "needs": data.counts["needs"], "capabilities": data.counts["capabilities"]},
            "pairs": {**data.counts, "held_out": data.held_out},
            "hyper_parameters": config.to_dict(), "training": training,
            "metrics": {"candidate": candidate_metrics, "active": active_metrics},
            "decision": {**decision, "stage": "dense"},
        }
        result: dict[str, Any] = {
            "version": None, "model": candidate.name, "previous_model": active_name,
            "activated": False, "pairs": manifest["pairs"], "training": training, "timings": timings}
        if not decision["accepted"]:
            log.warning("adapted model refused: %s", decision["reason"])
            mv.discard(root, version)
            return _finish(result, manifest, started)

        def accept(snapshot: Any) -> bool:
            """Judge the fused ranking of the candidate's index against the served one, each
            ranked with its own model's weights (the candidate's fitted on the training labels)."""
            shipped = RankingModel.load()
            current = engine.snapshot
            active_ranking = RankingModels(shipped, root).for_model(current.model)
            fitted = adapt_ranking.fit(snapshot, data.ranking_labels) if config.refit_ranking else None
            candidate_ranking = fitted or shipped
            manifest["ranking"] = fitted.to_dict() if fitted else None
            served = [s for s in data.eval_sets if s.name in ("labels", "feedback")]
            for rset in served:
                name = f"{rset.name}_served"
                candidate_metrics[name] = adapt_eval.served_metrics(snapshot, rset, candidate_ranking)
                active_metrics[name] = adapt_eval.served_metrics(current, rset, active_ranking)
            final = adapt_eval.guard(candidate_metrics, active_metrics, config.tolerance, tolerances)
            manifest["decision"] = {**final, "stage": "served"}
            if final["accepted"]:
                mv.commit_version(root, version, manifest)
            return final["accepted"]

        mark = time.monotonic()
        index_version = engine.switch_encoder(
            candidate, progress=_report(progress, 0.75, 0.25), accept=accept,
            before_swap=lambda: mv.activate(root, version))
        timings["reindex_s"] = round(time.monotonic() - mark, 1)
        if index_version is None:
            log.warning("adapted model refused: %s", manifest["decision"]["reason"])
            mv.discard(root, version)
            return _finish(result, manifest, started)
        return _finish({**result, "version": version, "activated": True, "index_version": index_version},
                       manifest, started)
    except BaseException:
        if mv.active_version(root) != version:
            mv.discard(root, version)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _finish(result: dict[str, Any], manifest: dict[str, Any], started: float) -> dict[str, Any]:
    return {**result, "decision": manifest["decision"], "metrics": manifest["metrics"],
            "ranking": manifest.get("ranking"), "seconds": round(time.monotonic() - started, 1)}


def rollback(engine: SearchEngine, base: BaseModel, load: Callable[[str], Encoder],
             progress: Progress | None = None) -> dict[str, Any]:
    """Re-activate the model before the active one (or the base model) and reindex with it.

    The version left behind is discarded, so a second rollback goes one step further back.
    """
    root = mv.models_root(engine.data_dir)

    def run() -> dict[str, Any]:
        current = mv.active_version(root)
        if current is None:
            raise NothingToRollBack("the base model is active: there is nothing to roll back")
        target = mv.previous_version(root)
        path = base.path if target is None else str(mv.version_path(root, target))
        _report(progress, 0.0, 1.0)(0.01, "加载模型 loading the previous model")
        encoder = _with_cache(load(path), engine.encoder)
        index_version = engine.switch_encoder(encoder, progress=_report(progress, 0.05, 0.95),
                                              before_swap=lambda: mv.activate(root, target))
        mv.discard(root, current)
        return {"rolled_back": current, "active_version": target, "model": encoder.name,
                "index_version": index_version}

    return mv.with_lock(root, run)


def models_status(engine: SearchEngine | None, data_dir: Path, base: BaseModel | None) -> dict[str, Any]:
    """Kept versions, which one is active, and which model the served index was built with."""
    root = mv.models_root(data_dir)
    snap = engine.snapshot if engine is not None else None
    return {
        "active_version": mv.active_version(root),
        "base_model": base.name if base else None,
        "serving_model": engine.encoder.name if engine is not None else None,
        "index_version": snap.version if snap else None,
        "index_model": snap.model if snap else None,
        "rollback_to": (mv.previous_version(root) or "base") if mv.active_version(root) else None,
        "items": mv.list_versions(root),
    }
