"""The third list: scenarios (场景清单). CRUD, bulk upsert, and the list that is the policy's
priority ranking (`sort=evaluation`), with the same visibility rules as needs and capabilities."""
from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from models import repository, scenario_store
from service.deps import AdminViewDep, SessionDep, StateDep, require_writer
from service.errors import ApiError
from service.routes.records import ERRORS, bulk_store, notify_changed, put_record_as_seen, visible
from service.scenario_schemas import BulkScenarios, ScenarioBulkItem, ScenarioIn, ScenarioOut, ScenarioPage
from service.scenarios import scenario_out
from service.schemas import ID_PATTERN, BulkResult

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"])
IdPath = Path(pattern=ID_PATTERN, min_length=1, max_length=64, description="Client id: 1–64 chars of A-Za-z0-9_.:-")


def reject_reserved_id(request: Request) -> None:
    if request.path_params.get("record_id") == "bulk":
        raise ApiError(422, "validation_error", "invalid input: id", [{
            "field": "id", "type": "reserved",
            "reason": "'bulk' is reserved; use POST /v1/scenarios/bulk for bulk upserts"}])


@router.put("/{record_id}", response_model=ScenarioOut,
            responses={**ERRORS, 201: {"model": ScenarioOut, "description": "Created: the id was new"}},
            dependencies=[Depends(require_writer), Depends(reject_reserved_id)],
            summary="Create or replace a scenario (场景)",
            description="`evaluation` needs all four scores (0–100); `overall` is computed by "
                        "SCENEMATCH_EVALUATION_WEIGHTS and returned. `capability_ids` may name capabilities "
                        "not stored yet: they are cited as cases once they are.")
def put_scenario(body: ScenarioIn, response: Response, state: StateDep, session: SessionDep,
                 admin: AdminViewDep, record_id: str = IdPath) -> dict[str, Any]:
    out, response.status_code = put_record_as_seen(
        session, "scenario", record_id, body.model_dump(), admin,
        lambda row: scenario_out(row, state.taxonomy, state.settings.evaluation_weights))
    notify_changed(state)
    return out


@router.get("/{record_id}", response_model=ScenarioOut, responses=ERRORS, summary="Get one scenario")
def get_scenario(state: StateDep, session: SessionDep, admin: AdminViewDep,
                 record_id: str = IdPath) -> dict[str, Any]:
    row = repository.get(session, "scenario", record_id)
    if row is None or not visible(row, admin):
        raise ApiError(404, "not_found", f"no scenario with id '{record_id}'")
    return scenario_out(row, state.taxonomy, state.settings.evaluation_weights)


@router.delete("/{record_id}", status_code=204, responses=ERRORS, dependencies=[Depends(require_writer)],
               summary="Delete a scenario")
def delete_scenario(state: StateDep, session: SessionDep, record_id: str = IdPath) -> Response:
    if not repository.delete(session, "scenario", record_id):
        raise ApiError(404, "not_found", f"no scenario with id '{record_id}'")
    session.commit()
    notify_changed(state)
    return Response(status_code=204)


@router.get("", response_model=ScenarioPage, responses=ERRORS,
            summary="List scenarios; sort=evaluation is the priority ranking (优先级排序)")
def list_scenarios(
    state: StateDep, session: SessionDep, admin: AdminViewDep,
    domain: str | None = Query(None, description="Domain code"),
    stage: list[str] = Query([], description="Stages (repeat or comma-separate): collecting, published, "
                                             "matching, building, testing, promoting, retired"),
    year: int | None = Query(None, ge=2000, le=2100),
    capability_id: list[str] = Query([], description="Scenarios delivered by these capabilities (its cases)"),
    sort: Literal["evaluation", "updated"] = Query(
        "evaluation", description="evaluation: best weighted evaluation first, unevaluated last; "
                                  "updated: most recently changed first"),
    limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0, le=10_000_000),
) -> dict[str, Any]:
    if domain is not None and not state.taxonomy.is_domain(domain):
        raise ApiError(422, "validation_error", "invalid input: domain",
                       [{"field": "domain", "reason": f"unknown domain code '{domain}'", "type": "value_error"}])
    stages = [s.strip() for item in stage for s in item.split(",") if s.strip()]
    wrong = [s for s in stages if s not in scenario_store.STAGES]
    if wrong:
        raise ApiError(422, "validation_error", "invalid input: stage", [{
            "field": "stage", "type": "literal_error",
            "reason": f"unknown stage '{wrong[0]}'; one of {', '.join(scenario_store.STAGES)}"}])
    cap_ids = [c.strip() for item in capability_id for c in item.split(",") if c.strip()][:50]
    weights = state.settings.evaluation_weights
    rows, total = scenario_store.list_scenarios(
        session, weights=weights, domain=domain, stage=stages, year=year, capability_ids=cap_ids,
        include_restricted=admin, sort=sort, limit=limit, offset=offset)
    return {"items": [scenario_out(r, state.taxonomy, weights) for r in rows], "total": total}


@router.post("/bulk", response_model=BulkResult, responses=ERRORS, dependencies=[Depends(require_writer)],
             summary="Upsert up to 10,000 scenarios; invalid items are reported, valid ones stored")
def bulk_scenarios(body: BulkScenarios, state: StateDep, session: SessionDep) -> dict[str, Any]:
    return bulk_store("scenario", ScenarioBulkItem, body.items, state, session)
