"""Matching in both directions and free-text search.

These routes open their database session inside the handler rather than through SessionDep:
FastAPI runs a generator dependency's two halves in its thread pool, two extra round trips
(~0.2 ms of CPU each on 2 cores, plus a wait for a core when busy) on the hottest routes. The
handler already runs in the pool, so opening the session there costs nothing extra.

They also return their body ready-made (service/match_schemas.py match_response_json, the exact
JSON FastAPI would have made of the dict): `response_model=MatchResponse` stays for /openapi.json,
but FastAPI neither validates a returned Response nor serialises it, which saves about 0.5 ms of
model building and a thread-pool round trip per request. Options such as
response_model_exclude_none would be ignored for the same reason.
"""
from typing import Any

from fastapi import APIRouter, Path, Query, Response

from indexer.ranking.matching import MatchPage, Matcher, NotFound
from indexer.retrieval.segment import Filters
from models import repository
from models.database import session_scope
from service.deps import AdminViewDep, StateDep
from service.errors import ApiError
from service.match_schemas import MatchFilters, MatchResponse, SearchRequest, match_response_json
from service.routes.records import record_out
from service.scenarios import scenario_out
from service.schemas import ID_PATTERN
from service.state import AppState

router = APIRouter(tags=["matching"])
TARGETS = {"capabilities": "capability", "needs": "need", "scenarios": "scenario"}
ERRORS = {404: {"description": "Unknown id"}, 422: {"description": "Invalid filter"},
          503: {"description": "Index not loaded yet"}}
IdPath = Path(pattern=ID_PATTERN, min_length=1, max_length=64)


def get_matcher(state: AppState) -> Matcher:
    matcher = state.extras.get("matcher")
    if not state.engine_ready or matcher is None:
        raise ApiError(503, "not_ready", state.extras.get("not_ready_reason", "the index is not loaded yet"))
    return matcher


def split_values(values: list[str]) -> list[str]:
    """Accept both ?domain=a&domain=b and ?domain=a,b."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def query_filters(domain: list[str], region: list[str], org_type: list[str], status: list[str]) -> Filters:
    raw = {"domain": split_values(domain), "region": split_values(region),
           "org_type": split_values(org_type), "status": split_values(status)}
    try:
        parsed = MatchFilters.model_validate(raw)
    except ValueError as exc:
        details = [{"field": ".".join(str(p) for p in e["loc"][:1]), "reason": e["msg"], "type": e["type"]}
                   for e in exc.errors()]  # type: ignore[attr-defined]
        raise ApiError(422, "validation_error", "invalid filter: " + ", ".join(d["field"] for d in details),
                       details) from None
    return Filters(**parsed.model_dump())


def render(page: MatchPage, matcher: Matcher, session: Any, state: AppState, admin: bool,
           offset: int, limit: int, query_info: dict[str, Any], source_kind: str | None = None,
           source_id: str | None = None) -> dict[str, Any]:
    rows = repository.read_many(session, page.target_kind, [h.id for h in page.hits])
    # The query record's own text is read only for an index that does not store key terms.
    query_row = (repository.get(session, source_kind, source_id)
                 if source_kind and source_id and matcher.needs_query_text(page) else None)
    items = []
    for position, hit in enumerate(page.hits, start=offset + 1):
        row = rows.get(hit.id)
        if row is None or (row.visibility != "public" and not admin):
            continue  # deleted since it was indexed, or hidden from this caller
        items.append({
            "rank": position, "score": round(hit.score, 6), "id": hit.id, "kind": page.target_kind,
            "item": scenario_out(row, state.taxonomy, state.settings.evaluation_weights)
            if page.target_kind == "scenario" else record_out(page.target_kind, row, state.taxonomy, admin),
            "explanation": matcher.explain_hit(page, hit, query_row, row),
        })
    return {"items": items, "total": page.total, "limit": limit, "offset": offset,
            "index_version": page.snapshot.version, "model": page.snapshot.model,
            "took_ms": round(page.took_ms, 2), "query": query_info}


def json_response(data: dict[str, Any]) -> Response:
    """`data` as the body FastAPI would have sent for response_model=MatchResponse, same headers."""
    return Response(match_response_json(data), media_type="application/json")


def make_match_route(kind: str, plural: str, summary: str) -> None:
    @router.get(f"/v1/{plural}/{{record_id}}/matches", response_model=MatchResponse, responses=ERRORS,
                summary=summary, name=f"{kind}_matches")
    def matches(
        state: StateDep, admin: AdminViewDep, record_id: str = IdPath,
        limit: int = Query(10, ge=1, le=100), offset: int = Query(0, ge=0, le=1000),
        domain: list[str] = Query([], description="Domain codes (repeat or comma-separate)"),
        region: list[str] = Query([], description="Regions, e.g. 武汉市"),
        org_type: list[str] = Query([], description="Capability org types"),
        status: list[str] = Query([], description="Need statuses (default open, matching)"),
        include_closed: bool = Query(False, description="Include closed/withdrawn needs"),
    ) -> Response:
        with session_scope(state.sessions) as session:
            matcher = get_matcher(state)
            filters = query_filters(domain, region, org_type, status)
            try:
                page = matcher.match_record(kind, record_id, filters=filters, include_restricted=admin,
                                            limit=limit, offset=offset, include_closed=include_closed)
            except NotFound:
                if repository.get(session, kind, record_id) is not None and admin:
                    raise ApiError(503, "not_indexed_yet",
                                   "the record is stored but not indexed yet; retry shortly") from None
                raise ApiError(404, "not_found", f"no {kind} with id '{record_id}'") from None
            data = render(page, matcher, session, state, admin, offset, limit,
                          {"kind": kind, "id": record_id}, kind, record_id)
        return json_response(data)  # serialised once the session is closed


make_match_route("need", "needs", "Ranked capabilities for a need (需求→能力), with explanations")
make_match_route("capability", "capabilities", "Ranked needs for a capability (能力→需求), with explanations")


@router.post("/v1/search", response_model=MatchResponse, responses=ERRORS,
             summary="Free-text search over capabilities or needs")
def search(body: SearchRequest, state: StateDep, admin: AdminViewDep) -> Response:
    with session_scope(state.sessions) as session:
        matcher = get_matcher(state)
        target = TARGETS[body.target]
        if target == "scenario" and (body.filters.org_type or body.filters.status):
            field = "org_type" if body.filters.org_type else "status"
            raise ApiError(422, "validation_error", f"invalid filter: filters.{field}", [{
                "field": f"filters.{field}", "type": "value_error",
                "reason": "does not apply to target scenarios (use GET /v1/scenarios?stage= for stages)"}])
        page = matcher.search(body.query, target, filters=Filters(**body.filters.model_dump()),
                              include_restricted=admin, limit=body.limit, offset=body.offset,
                              include_closed=body.include_closed)
        data = render(page, matcher, session, state, admin, body.offset, body.limit,
                      {"text": body.query, "target": body.target})
    return json_response(data)
