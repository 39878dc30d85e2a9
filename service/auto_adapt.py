"""The deployment improves itself: an encoder adaptation starts on its own when the corpus has grown.

A background thread checks now and then whether the stored records have grown by `growth` since
the last adaptation (or `days` have passed with new records since), the corpus holds at least
`min_records`, and nothing was written for `quiet` seconds (a bulk load is not adapted half-way).
It then submits the same guarded job as `POST /v1/admin/adapt {}`: trained at low priority while
the current index serves, activated only if the guard accepts it, versioned, reversible with
`POST /v1/admin/model/rollback`. The state (the record count it last adapted at, when, and what
was decided) lives in DATA_DIR/models/auto_adapt.json, beside the model versions, so every
replica and every restart sees the same one.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from indexer.adaptation import adapt
from models import model_versions as mv
from models import repository
from models.database import session_scope
from service.jobs import JobConflict, JobContext
from service.state import AppState

log = logging.getLogger("scenematch.auto_adapt")
STATE_FILE = "auto_adapt.json"
EXCLUSIVE = "model"  # shared with the adapt and rollback routes: one model job at a time


@dataclass(frozen=True)
class Policy:
    enabled: bool
    growth: float
    days: float
    min_records: int
    quiet_s: float
    check_s: float

    @classmethod
    def from_settings(cls, settings: Any) -> "Policy":
        return cls(enabled=settings.auto_adapt, growth=settings.auto_adapt_growth, days=settings.auto_adapt_days,
                   min_records=settings.auto_adapt_min_records, quiet_s=settings.auto_adapt_quiet_s,
                   check_s=settings.auto_adapt_check_s)


def state_path(data_dir: Path) -> Path:
    return mv.models_root(data_dir) / STATE_FILE


def read_state(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads(state_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_state(data_dir: Path, **values: Any) -> dict[str, Any]:
    """Merge `values` into the state file (written whole, then renamed: never half a file)."""
    state = {**read_state(data_dir), **values}
    path = state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)
    return state


def record_run(data_dir: Path, records: int, result: dict[str, Any] | None, trigger: str,
               error: str | None = None) -> None:
    """After any adaptation (automatic or asked for): the new baseline and what was decided."""
    decision = (result or {}).get("decision") or {}
    write_state(data_dir, baseline_records=records, last_run_at=_now().isoformat(), last_trigger=trigger,
                last_activated=bool((result or {}).get("activated")), last_version=(result or {}).get("version"),
                last_reason=error or decision.get("reason"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def decide(policy: Policy, state: dict[str, Any], records: int, quiet_for_s: float,
           now: dt.datetime | None = None) -> tuple[bool, str]:
    """Whether to start an adaptation now, and why (or why not), in words an operator reads."""
    now = now or _now()
    if not policy.enabled:
        return False, "自动自适应已关闭 (SCENEMATCH_AUTO_ADAPT=false)"
    if records < policy.min_records:
        return False, f"语料不足：{records} 条记录，少于 {policy.min_records} 条"
    if quiet_for_s < policy.quiet_s:
        return False, f"等待写入停止：距上次写入 {quiet_for_s:.0f} 秒，需 {policy.quiet_s:.0f} 秒"
    baseline = int(state.get("baseline_records") or 0)
    if baseline <= 0:
        return True, f"语料尚未自适应过（{records} 条记录）"
    grown = (records - baseline) / baseline
    if grown >= policy.growth:
        return True, f"语料增长 {grown:.0%}（{baseline} → {records} 条），达到 {policy.growth:.0%}"
    last = state.get("last_run_at")
    age_days = (now - dt.datetime.fromisoformat(last)).total_seconds() / 86400 if last else float("inf")
    if age_days >= policy.days and records != baseline:
        return True, f"距上次自适应已 {age_days:.0f} 天，且语料有变化"
    return False, f"语料增长 {grown:.0%}，未达 {policy.growth:.0%}；距上次 {age_days:.0f} 天，未达 {policy.days:.0f} 天"


class AutoAdapter:
    """The background checker; `status()` is what /v1/admin/index shows under `auto_adapt`."""

    def __init__(self, state: AppState, policy: Policy):
        self.app, self.policy = state, policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_seq: int | None = None
        self._quiet_since = time.monotonic()
        self.last_check: dict[str, Any] = {}

    def start(self) -> None:
        if not self.policy.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="auto-adapt", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.policy.check_s):
            try:
                self.check()
            except Exception:  # never let the checker take the service down
                log.exception("automatic adaptation check failed")

    def _corpus(self) -> tuple[int, int]:
        with session_scope(self.app.sessions) as session:
            records = repository.count(session, "need") + repository.count(session, "capability")
            return records, repository.last_change_seq(session)

    def check(self) -> str | None:
        """Decide once; submit the job if it is time. Returns the job id when one was started."""
        records, seq = self._corpus()
        if seq != self._seen_seq:
            self._seen_seq, self._quiet_since = seq, time.monotonic()
        quiet = time.monotonic() - self._quiet_since
        engine = self.app.extras.get("engine")
        go, reason = decide(self.policy, read_state(self.app.settings.data_dir), records, quiet)
        if go and (engine is None or not self.app.engine_ready):
            go, reason = False, "索引尚未就绪"
        self.last_check = {"at": _now().isoformat(), "records": records, "start": go, "reason": reason}
        if not go:
            return None
        try:
            seen = read_state(self.app.settings.data_dir).get("last_run_at")
            job_id = self.app.jobs.submit("adapt", {"trigger": "auto", "reason": reason},
                                          self._job(engine, records, seen), exclusive=EXCLUSIVE)
        except JobConflict as conflict:
            self.last_check["reason"] = f"已有模型任务在运行（{conflict.job_id}）"
            return None
        self.last_check["job_id"] = job_id
        log.info("automatic adaptation started (job %s): %s", job_id, reason)
        return job_id

    def _job(self, engine: Any, records: int, seen: str | None) -> Any:
        settings = self.app.settings

        def run(ctx: JobContext) -> dict[str, Any]:
            if read_state(settings.data_dir).get("last_run_at") != seen:
                # Another replica of this data dir adapted meanwhile: its run is the one this was for.
                return {"trigger": "auto", "skipped": "another replica adapted meanwhile", "activated": False}
            base = adapt.BaseModel.resolve(settings.embedding_model, settings.cache_dir)
            try:
                result = adapt.adapt(engine, base, adapt.AdaptConfig(), progress=ctx.progress)
            except Exception as exc:
                # Recorded as a run: a corpus that cannot be adapted is not retried at every check.
                record_run(settings.data_dir, records, None, "auto", error=f"{type(exc).__name__}: {exc}")
                raise
            record_run(settings.data_dir, records, result, "auto")
            return {**result, "trigger": "auto"}
        return run

    def status(self) -> dict[str, Any]:
        return {"enabled": self.policy.enabled, "policy": asdict(self.policy),
                "state": read_state(self.app.settings.data_dir), "last_check": self.last_check}
