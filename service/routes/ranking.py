"""赛马 (outcome learning) API: refit the ranking's weights on feedback and scenario outcomes as a
guarded job, see the learned versions, roll back (admin only)."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Response
from pydantic import Field

from indexer.adaptation import outcomes
from models import model_versions as mv
from models.database import session_scope
from service.deps import StateDep, require_admin
from service.errors import ApiError
from service.jobs import JobConflict, JobContext
from service.routes.admin import AUTH_ERRORS, JobAccepted, ready_engine
from service.routes.matching import get_matcher
from service.schemas import StrictModel
from service.state import AppState

router = APIRouter(prefix="/v1/admin/ranking", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=AUTH_ERRORS)
DEFAULTS = outcomes.OutcomeConfig()


class LearnRequest(StrictModel):
    """Every field is optional."""

    holdout_fraction: float = Field(DEFAULTS.holdout_fraction, gt=0, lt=1,
                                    description="Share of the labelled needs held out to judge the new weights")
    min_gain: float = Field(DEFAULTS.min_gain, ge=0, le=0.5,
                            description="Held-out nDCG@10 must rise by more than this for the weights to serve")
    min_held_out_queries: int = Field(DEFAULTS.min_held_out_queries, ge=1, le=10_000)
    min_train_queries: int = Field(DEFAULTS.min_train_queries, ge=1, le=100_000)
    deal_weight: float = Field(DEFAULTS.deal_weight, ge=1, le=20,
                               description="How much more a deal (or a delivered scenario) counts than a relevant pair")
    use_feedback: bool = Field(DEFAULTS.use_feedback, description="Learn from POST /v1/feedback labels")
    use_scenarios: bool = Field(DEFAULTS.use_scenarios,
                                description="Learn from scenarios that grew from a need and were delivered")


def _root(state: AppState) -> Any:
    return mv.ranking_root(state.settings.data_dir)


def _reload(state: AppState) -> None:
    matcher = state.extras.get("matcher")
    if matcher is not None:
        matcher.rankings.reload()


@router.post("/learn", status_code=202, response_model=JobAccepted,
             summary="赛马: refit the ranking's weights on outcomes; activated only if they win on held-out needs",
             responses={409: {"description": "A model or ranking job is running"},
                        503: {"description": "Index not loaded yet"}})
def start_learning(state: StateDep, response: Response,
                   body: LearnRequest | None = Body(None, description="Default: the shipped settings")
                   ) -> dict[str, Any]:
    """Outcomes are the latest feedback labels (irrelevant 0 · relevant 1 · contacted 2 · deal 3) and the
    scenarios that grew from a need and were delivered (3). The job result names the decision
    (`activated` or `refused`), the reason, the held-out nDCG@10 of the served and the new weights with
    the paired gain and its 95% interval, and the version."""
    engine = ready_engine(state)
    matcher = get_matcher(state)
    config = outcomes.OutcomeConfig(**(body or LearnRequest()).model_dump())

    def run(ctx: JobContext) -> dict[str, Any]:
        ctx.progress(0.05, "收集反馈与场景成效 collecting outcomes")
        with session_scope(state.sessions) as session:
            grades, counts = outcomes.collect(session, config)
        snapshot = engine.snapshot
        ctx.progress(0.2, "拟合并在留出需求上评估 fitting and judging")
        result = outcomes.run(_root(state), snapshot, grades, counts, matcher.ranking(snapshot), config)
        _reload(state)
        return result

    try:
        job_id = state.jobs.submit("ranking_learn", config.to_dict(), run, exclusive="model")
    except JobConflict as conflict:
        raise ApiError(409, "model_job_running", f"a model or ranking job is already running (job {conflict.job_id})",
                       {"job_id": conflict.job_id, "status_url": f"/v1/admin/jobs/{conflict.job_id}"}) from None
    url = f"/v1/admin/jobs/{job_id}"
    response.headers["Location"] = url
    return {"job_id": job_id, "kind": "ranking_learn", "status": "queued", "status_url": url}


@router.post("/rollback", summary="Re-activate the previously learned weights (or the model's own)",
             responses={409: {"description": "No learned weights are active"}})
def rollback_learning(state: StateDep) -> dict[str, Any]:
    try:
        result = outcomes.rollback(_root(state))
    except outcomes.OutcomeError as exc:
        raise ApiError(409, "nothing_to_roll_back", str(exc)) from None
    except mv.ModelBusy as exc:
        raise ApiError(409, "model_job_running", str(exc)) from None
    _reload(state)
    return result


@router.get("", summary="Learned ranking versions (newest first), the active one, and the served weights")
def ranking_status(state: StateDep) -> dict[str, Any]:
    matcher = state.extras.get("matcher")
    snapshot = matcher.engine.snapshot if matcher is not None else None
    served = matcher.ranking(snapshot).to_dict() if snapshot is not None else None
    return {**outcomes.status(_root(state)), "served_model": snapshot.model if snapshot else None,
            "served_weights": served}
