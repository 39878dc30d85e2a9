"""Encoder adaptation API: start a guarded adaptation, roll back, list model versions (admin only)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, Field

from indexer.adaptation import adapt
from indexer.adaptation.weights import MIN_QUERIES
from indexer.retrieval.engine import SearchEngine
from models import model_versions as mv
from service import auto_adapt, search
from service.deps import StateDep, require_admin
from service.errors import ApiError
from service.jobs import JobConflict, JobContext
from service.schemas import StrictModel
from service.state import AppState

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses={401: {"description": "Missing bearer token"},
                              403: {"description": "Not the admin token, or admin disabled"}})
# Adaptation and rollback both replace the model: one at a time.
EXCLUSIVE = "model"
DEFAULTS = adapt.AdaptConfig()


class AdaptRequest(StrictModel):
    """Bounds and hyper-parameters of one run; every field is optional."""

    max_pairs: int = Field(DEFAULTS.max_pairs, ge=32, le=200_000,
                           description="Most training pairs sampled (labelled pairs first, then one "
                                       "per record)")
    max_seconds: float = Field(DEFAULTS.max_seconds, ge=10, le=4 * 3600,
                               description="Training stops after this many seconds and keeps what it learned")
    learning_rate: float = Field(DEFAULTS.learning_rate, gt=0, le=1e-2)
    epochs: float = Field(DEFAULTS.epochs, gt=0, le=10)
    batch_size: int = Field(DEFAULTS.batch_size, ge=4, le=128)
    seed: int = Field(DEFAULTS.seed, ge=0, le=2**31 - 1)
    loss: Literal["mnrl", "mnrl_symmetric"] = DEFAULTS.loss
    freeze_embeddings: bool = Field(DEFAULTS.freeze_embeddings,
                                    description="Keep the vocabulary table fixed (about 1 GB less memory)")
    record_pairs: Literal["lead", "whole", "passages", "both", "none"] = Field(
        DEFAULTS.record_pairs, description="The records' own pairs: lead (title → the opening of the "
        "description, the default), whole (title → whole description), passages (title → each passage), both "
        "(whole and passages), or none (labelled pairs only)")
    use_feedback: bool = DEFAULTS.use_feedback
    use_demo_labels: bool = Field(DEFAULTS.use_demo_labels,
                                  description="Also train on the seed corpora's labels (they always judge)")
    tolerance: float = Field(DEFAULTS.tolerance, ge=0, le=0.2,
                             description="Largest nDCG@10 drop on a held-out set still counted as not losing")
    general_tolerance: float = Field(DEFAULTS.general_tolerance, ge=0, le=0.2,
                                     description="The same for the probe on seed records the deployment does "
                                                 "not train on")
    refit_ranking: bool = Field(DEFAULTS.refit_ranking,
                                description="Fit the ranking's signal weights to the new encoder's scores on "
                                            "the training labels (kept with the version; at least "
                                            f"{MIN_QUERIES} labelled needs, else the shipped weights)")


class JobAccepted(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued"] = "queued"
    status_url: str


def _engine(state: AppState) -> SearchEngine:
    engine = state.extras.get("engine")
    if not state.engine_ready or engine is None or engine.snapshot is None:
        raise ApiError(503, "not_ready", state.extras.get("not_ready_reason", "the index is not loaded yet"))
    return engine


def _base(state: AppState) -> adapt.BaseModel:
    return adapt.BaseModel.resolve(state.settings.embedding_model, state.settings.cache_dir)


def _loader(state: AppState, base: adapt.BaseModel) -> Callable[[str], Any]:
    settings = state.settings

    def load(path: str) -> Any:
        # The base model is the one the service loaded at start: reuse it, don't load a copy.
        model = settings.embedding_model if path == base.path else path
        return search.shared_encoder(model, str(settings.cache_dir), settings.encoder_backend)

    return load


def _submit(state: AppState, response: Response, kind: str, params: dict[str, Any],
            fn: Callable[[JobContext], dict[str, Any]]) -> dict[str, Any]:
    try:
        job_id = state.jobs.submit(kind, params, fn, exclusive=EXCLUSIVE)
    except JobConflict as conflict:
        raise ApiError(409, "model_job_running",
                       f"an adaptation or rollback is already running (job {conflict.job_id})",
                       {"job_id": conflict.job_id, "status_url": f"/v1/admin/jobs/{conflict.job_id}"}
                       ) from None
    url = f"/v1/admin/jobs/{job_id}"
    response.headers["Location"] = url
    return {"job_id": job_id, "kind": kind, "status": "queued", "status_url": url}


@router.post("/adapt", status_code=202, response_model=JobAccepted,
             summary="Fine-tune the encoder on this deployment's records and feedback (guarded job)",
             responses={409: {"description": "An adaptation or rollback is already running"},
                        503: {"description": "Index not loaded yet"}})
def start_adaptation(state: StateDep, response: Response,
                     body: AdaptRequest | None = Body(None, description="Default: the shipped settings")
                     ) -> dict[str, Any]:
    """Trains a candidate from the base model on held-in pairs, compares it with the serving model
    on held-out data (records, demo labels, feedback) and activates it only if it does not lose;
    then the index is rebuilt with it while the current one serves, and both swap in together.
    The job result reports both models' metrics and the decision."""
    engine = _engine(state)
    config = adapt.AdaptConfig(**(body or AdaptRequest()).model_dump())
    base = _base(state)

    def run(ctx: JobContext) -> dict[str, Any]:
        records = sum(engine.snapshot.counts().get(k, 0) for k in ("needs", "capabilities"))
        result = adapt.adapt(engine, base, config, progress=ctx.progress)
        # The next automatic adaptation counts growth from here.
        auto_adapt.record_run(state.settings.data_dir, records, result, "api")
        return result

    return _submit(state, response, "adapt", config.to_dict(), run)


@router.post("/model/rollback", status_code=202, response_model=JobAccepted,
             summary="Re-activate the previous model version (or the base model) and reindex with it",
             responses={409: {"description": "Nothing to roll back to, or a model job is running"},
                        503: {"description": "Index not loaded yet"}})
def start_rollback(state: StateDep, response: Response) -> dict[str, Any]:
    """The version left behind is discarded; the current index serves until the swap."""
    engine = _engine(state)
    root = mv.models_root(state.settings.data_dir)
    if mv.active_version(root) is None:
        raise ApiError(409, "nothing_to_roll_back", "the base model is active: there is no earlier model")
    base = _base(state)
    load = _loader(state, base)

    def run(ctx: JobContext) -> dict[str, Any]:
        return adapt.rollback(engine, base, load, progress=ctx.progress)

    return _submit(state, response, "model_rollback", {"from": mv.active_version(root)}, run)


@router.get("/models", summary="Model versions (newest first), the active one, and the served index's model")
def list_models(state: StateDep) -> dict[str, Any]:
    engine = state.extras.get("engine")
    return adapt.models_status(engine, state.settings.data_dir, _base(state))
