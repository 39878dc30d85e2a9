"""Health, readiness and the domain taxonomy."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import StateDep
from service.errors import error_response
from service.readiness import DatabaseProbe
from service.schemas import DomainList

router = APIRouter()


@router.get("/healthz", tags=["meta"], summary="Liveness: 200 while the process runs")
async def healthz() -> dict[str, str]:  # async: no thread-pool hop for a probe
    return {"status": "ok"}


@router.get("/readyz", tags=["meta"],
            summary="Readiness: 200 once an index is loaded and the database answers, 503 otherwise",
            responses={503: {"description": "Not ready: the index is not loaded yet, or the database "
                                            "is unreachable (`details.reason`: `database_unreachable`)"}})
def readyz(state: StateDep) -> JSONResponse:
    if not state.engine_ready:
        reason = state.extras.get("not_ready_reason", "the index is not loaded yet")
        return error_response(503, "not_ready", reason, headers={"Retry-After": "5"})
    probe = state.extras.get("db_probe")
    if probe is None:
        probe = state.extras.setdefault("db_probe", DatabaseProbe(state.engine))
    if (failure := probe.check()) is not None:
        return error_response(503, "not_ready", "the database is unreachable (SELECT 1 failed)",
                              {"reason": failure}, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", **state.extras.get("ready_info", {})})


@router.get("/v1/domains", response_model=DomainList, tags=["domains"],
            summary="The 20 domains of the policy in its 5 categories")
def list_domains(state: StateDep) -> dict[str, Any]:
    tax = state.taxonomy
    return {
        "items": [
            {"code": d.code, "name": d.name, "category": d.category_name,
             "category_name": d.category_name, "category_code": d.category,
             "description": d.description, "key_terms": list(d.key_terms)}
            for d in tax.domains.values()
        ],
        "categories": [{"code": c, "name": n} for c, n in tax.categories.items()],
    }
