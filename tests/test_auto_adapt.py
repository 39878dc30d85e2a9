"""The deployment adapts on its own: when it decides to, what it records, and that it never blocks."""
from __future__ import annotations

import datetime as dt
import types
from pathlib import Path
from typing import Any

from models import repository
from models.database import make_engine, make_session_factory, migrate, session_scope
from service import auto_adapt
from service.auto_adapt import AutoAdapter, Policy, decide
from service.jobs import JobConflict
from tests.conftest import make_settings

POLICY = Policy(enabled=True, growth=0.2, days=30, min_records=200, quiet_s=1800, check_s=600)
NOW = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)


def test_the_first_adaptation_waits_for_enough_records_and_quiet():
    assert decide(POLICY, {}, 150, 9999, NOW)[0] is False
    go, reason = decide(POLICY, {}, 300, 60, NOW)
    assert not go and "等待写入停止" in reason  # a bulk load is not adapted half-way
    go, reason = decide(POLICY, {}, 300, 1800, NOW)
    assert go and "尚未自适应" in reason
    assert decide(Policy(**{**POLICY.__dict__, "enabled": False}), {}, 300, 9999, NOW)[0] is False


def test_later_ones_wait_for_growth_or_a_month_with_changes():
    state = {"baseline_records": 1000, "last_run_at": (NOW - dt.timedelta(days=3)).isoformat()}
    assert decide(POLICY, state, 1150, 9999, NOW)[0] is False
    go, reason = decide(POLICY, state, 1200, 9999, NOW)
    assert go and "20%" in reason
    old = {**state, "last_run_at": (NOW - dt.timedelta(days=31)).isoformat()}
    assert decide(POLICY, old, 1001, 9999, NOW)[0] is True
    assert decide(POLICY, old, 1000, 9999, NOW)[0] is False  # nothing changed: nothing to learn


def test_a_run_records_the_new_baseline(tmp_path: Path):
    auto_adapt.record_run(tmp_path, 960, {"activated": True, "version": "v1",
                                          "decision": {"reason": "the candidate does not lose"}}, "api")
    state = auto_adapt.read_state(tmp_path)
    assert state["baseline_records"] == 960 and state["last_activated"] and state["last_version"] == "v1"
    assert state["last_trigger"] == "api" and state["last_reason"] == "the candidate does not lose"
    auto_adapt.record_run(tmp_path, 1000, None, "auto", error="AdaptError: not enough training pairs")
    state = auto_adapt.read_state(tmp_path)
    assert state["baseline_records"] == 1000 and not state["last_activated"] and "not enough" in state["last_reason"]
    assert decide(POLICY, state, 1100, 9999, NOW)[0] is False  # a failed run is not retried at every check


class FakeJobs:
    """Records submissions; `busy` makes the next one conflict (another model job running)."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, dict[str, Any], str | None]] = []
        self.busy = False

    def submit(self, kind: str, params: dict[str, Any], fn: Any, exclusive: str | None = None) -> str:
        if self.busy:
            raise JobConflict("other-job")
        self.submitted.append((kind, params, exclusive))
        return f"job-{len(self.submitted)}"


def app_state(tmp_path: Path, records: int) -> Any:
    settings = make_settings(tmp_path)
    settings.ensure_dirs()
    db = make_engine(settings.resolved_database_url)
    migrate(db)
    sessions = make_session_factory(db)
    with session_scope(sessions) as session:
        for i in range(records):
            repository.upsert(session, "need", f"n{i}", {"title": f"需求{i}", "description": "内容"})
    return types.SimpleNamespace(settings=settings, sessions=sessions, jobs=FakeJobs(), engine_ready=True,
                                 extras={"engine": object()})


def test_the_checker_submits_one_exclusive_job_once_quiet(tmp_path: Path):
    state = app_state(tmp_path, 5)
    checker = AutoAdapter(state, Policy(enabled=True, growth=0.2, days=30, min_records=3, quiet_s=0.2, check_s=60))
    assert checker.check() is None and "等待写入停止" in checker.last_check["reason"]  # writes just seen
    import time
    time.sleep(0.25)
    assert checker.check() == "job-1"
    [(kind, params, exclusive)] = state.jobs.submitted
    assert kind == "adapt" and params["trigger"] == "auto" and exclusive == auto_adapt.EXCLUSIVE
    state.jobs.busy = True  # an adaptation asked for by an operator runs: no second one
    assert checker.check() is None and "other-job" in checker.last_check["reason"]
    status = checker.status()
    assert status["enabled"] and status["policy"]["min_records"] == 3 and status["last_check"]["records"] == 5


def test_the_checker_waits_for_the_index(tmp_path: Path):
    state = app_state(tmp_path, 5)
    state.engine_ready = False
    checker = AutoAdapter(state, Policy(enabled=True, growth=0.2, days=30, min_records=3, quiet_s=0, check_s=60))
    assert checker.check() is None and checker.last_check["reason"] == "索引尚未就绪"


def test_a_disabled_checker_starts_no_thread(tmp_path: Path):
    checker = AutoAdapter(app_state(tmp_path, 0), Policy(enabled=False, growth=0.2, days=30, min_records=1,
                                                         quiet_s=0, check_s=60))
    checker.start()
    assert checker._thread is None
