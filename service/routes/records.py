"""CRUD, listing and bulk upsert for needs and capabilities (one router factory, two kinds)."""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ValidationError

from models import repository
from models.db import utcnow
from models.repository import RecordKind
from models.taxonomy import Taxonomy
from service.deps import AdminViewDep, SessionDep, StateDep, require_writer
from service.errors import ApiError, describe_validation_errors
from service.schemas import (
    ID_PATTERN,
    BulkCapabilities,
    BulkError,
    BulkNeeds,
    BulkResult,
    CapabilityBulkItem,
    CapabilityIn,
    CapabilityOut,
    CapabilityPage,
    NeedBulkItem,
    NeedIn,
    NeedOut,
    NeedPage,
)
from service.state import AppState

ERRORS = {
    400: {"description": "Invalid JSON"}, 401: {"description": "Missing token"},
    403: {"description": "Token not allowed"}, 404: {"description": "Unknown id"},
    413: {"description": "Body too large"}, 422: {"description": "Invalid field (named in details)"},
}


def record_out(kind: RecordKind, row: Any, taxonomy: Taxonomy, admin: bool) -> dict[str, Any]:
    """A stored row as the API shows it; `contact` only for admin callers."""
    data: dict[str, Any] = {f: getattr(row, f) for f in repository.FIELDS[kind]}
    data.update(id=row.id, created_at=row.created_at, updated_at=row.updated_at,
                domain_predicted=bool(row.domain_predicted))
    if row.domain_predicted and row.domain_scores:
        data["predicted_domains"] = row.domain_scores
    if kind == "need":
        data["domain_name"] = taxonomy.name(row.domain)
    else:
        data["domain_names"] = [taxonomy.name(c) for c in row.domains or [] if taxonomy.name(c)]
    if not admin:
        data["contact"] = None
    return data


# Path words under /v1/{plural}/ that are not record ids: `PUT /v1/needs/bulk` is a bulk call
# sent with the wrong method, and storing a record "bulk" would hide that mistake.
RESERVED_IDS = frozenset({"bulk"})


def visible(row: Any, admin: bool) -> bool:
    return admin or row.visibility == "public"


def put_record_as_seen(session: Any, kind: RecordKind, record_id: str, data: dict[str, Any],
                       admin: bool, show: Callable[[Any], dict[str, Any]]) -> tuple[dict[str, Any], int]:
    """Store a PUT; the record as shown to the caller (`show(row)`) and the status: 201 for a
    new id, 200 for a replaced record.

    To a caller that may not see the stored record (a restricted one, to a client token) the id
    is new: it gets 201 and the record's times as of this request. 200, or an earlier
    created_at, would tell it that a restricted record has this id. Nothing stored changes.
    """
    before = repository.get(session, kind, record_id)
    hidden = before is not None and not visible(before, admin)
    row, created = repository.upsert(session, kind, record_id, data)
    session.commit()
    out = show(row)
    if hidden:
        now = utcnow()
        out.update(created_at=now, updated_at=now)
    return out, 201 if created or hidden else 200


def notify_changed(state: AppState) -> None:
    hook = state.extras.get("on_change")
    if hook is not None:
        hook()


def make_router(kind: RecordKind) -> APIRouter:
    is_need = kind == "need"
    plural = "needs" if is_need else "capabilities"
    label = "场景需求 need" if is_need else "企业能力 capability"
    InModel: type[BaseModel] = NeedIn if is_need else CapabilityIn
    OutModel: type[BaseModel] = NeedOut if is_need else CapabilityOut
    PageModel: type[BaseModel] = NeedPage if is_need else CapabilityPage
    BulkItem: type[BaseModel] = NeedBulkItem if is_need else CapabilityBulkItem
    BulkBody: type[BaseModel] = BulkNeeds if is_need else BulkCapabilities
    router = APIRouter(prefix=f"/v1/{plural}", tags=[plural])
    IdPath = Path(pattern=ID_PATTERN, min_length=1, max_length=64,
                  description="Client id: 1–64 chars of A-Za-z0-9_.:-")

    def reject_reserved_id(request: Request) -> None:
        """Runs before the body is validated, so the reason is the id even when the body is a bulk one."""
        record_id = request.path_params.get("record_id")
        if record_id in RESERVED_IDS:
            raise ApiError(422, "validation_error", "invalid input: id", [{
                "field": "id", "type": "reserved",
                "reason": f"'{record_id}' is reserved; use POST /v1/{plural}/bulk for bulk upserts"}])

    @router.put("/{record_id}", response_model=OutModel,
                responses={**ERRORS, 201: {"model": OutModel, "description": "Created: the id was new"}},
                dependencies=[Depends(require_writer), Depends(reject_reserved_id)],
                summary=f"Create or replace a {label}",
                description=f"The id `bulk` is reserved (422): bulk upserts are `POST /v1/{plural}/bulk`.")
    def put_record(body: InModel, response: Response, state: StateDep, session: SessionDep,  # type: ignore[valid-type]
                   admin: AdminViewDep, record_id: str = IdPath) -> dict[str, Any]:
        out, response.status_code = put_record_as_seen(
            session, kind, record_id, body.model_dump(), admin, lambda row: record_out(kind, row, state.taxonomy, admin))
        notify_changed(state)
        return out

    @router.get("/{record_id}", response_model=OutModel, responses=ERRORS, summary=f"Get one {label}")
    def get_record(state: StateDep, session: SessionDep, admin: AdminViewDep,
                   record_id: str = IdPath) -> dict[str, Any]:
        row = repository.get(session, kind, record_id)
        if row is None or not visible(row, admin):
            raise ApiError(404, "not_found", f"no {kind} with id '{record_id}'")
        return record_out(kind, row, state.taxonomy, admin)

    @router.delete("/{record_id}", status_code=204, responses=ERRORS,
                   dependencies=[Depends(require_writer)], summary=f"Delete a {label}")
    def delete_record(state: StateDep, session: SessionDep, record_id: str = IdPath) -> Response:
        if not repository.delete(session, kind, record_id):
            raise ApiError(404, "not_found", f"no {kind} with id '{record_id}'")
        session.commit()
        notify_changed(state)
        return Response(status_code=204)

    @router.get("", response_model=PageModel, responses=ERRORS, summary=f"List {plural} with filters")
    def list_records(
        state: StateDep, session: SessionDep, admin: AdminViewDep,
        domain: str | None = Query(None, description="Domain code"),
        region: str | None = Query(None, max_length=64),
        status: str | None = Query(None, pattern="^(open|matching|closed|withdrawn)$",
                                   include_in_schema=is_need),
        org_type: str | None = Query(None, pattern="^(enterprise|university|institute|service|other)$",
                                     include_in_schema=not is_need),
        limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0, le=10_000_000),
    ) -> dict[str, Any]:
        if domain is not None and not state.taxonomy.is_domain(domain):
            raise ApiError(422, "validation_error", "invalid input: domain",
                           [{"field": "domain", "reason": f"unknown domain code '{domain}'",
                             "type": "value_error"}])
        rows, total = repository.list_records(
            session, kind, domain=domain, region=region, status=status, org_type=org_type,
            include_restricted=admin, limit=limit, offset=offset)
        return {"items": [record_out(kind, r, state.taxonomy, admin) for r in rows], "total": total}

    @router.post("/bulk", response_model=BulkResult, responses=ERRORS,
                 dependencies=[Depends(require_writer)],
                 summary=f"Upsert up to 10,000 {plural}; invalid items are reported, valid ones stored")
    def bulk_upsert(body: BulkBody, state: StateDep, session: SessionDep) -> dict[str, Any]:  # type: ignore[valid-type]
        return bulk_store(kind, BulkItem, body.items, state, session)  # type: ignore[attr-defined]

    return router


def bulk_store(kind: RecordKind, item_model: type[BaseModel], items: list[Any], state: AppState,
               session: Any) -> dict[str, Any]:
    """Validate each item on its own, store the valid ones, report each invalid one by index."""
    errors: list[BulkError] = []
    valid: list[tuple[str, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(items):
        if not isinstance(raw, dict):
            errors.append(BulkError(index=index, errors=[{
                "field": "item", "reason": "each item must be a JSON object", "type": "dict_type"}]))
            continue
        try:
            item = item_model.model_validate(raw)
        except ValidationError as exc:
            rid = raw.get("id") if isinstance(raw.get("id"), str) else None
            errors.append(BulkError(index=index, id=rid,
                                    errors=describe_validation_errors(list(exc.errors()))))
            continue
        data = item.model_dump()
        rid = data.pop("id")
        if rid in RESERVED_IDS:  # as PUT refuses it: /v1/<kind>/bulk could not address it
            errors.append(BulkError(index=index, id=rid, errors=[{
                "field": "id", "reason": f"'{rid}' is reserved for the bulk endpoint", "type": "reserved"}]))
            continue
        if rid in seen:
            errors.append(BulkError(index=index, id=rid, errors=[{
                "field": "id", "reason": f"duplicate of item {seen[rid]} in this request",
                "type": "duplicate"}]))
            continue
        seen[rid] = index
        valid.append((rid, data))
    stored = unchanged = 0
    # One transaction per chunk keeps memory bounded and locks short under load.
    for start in range(0, len(valid), 500):
        chunk = valid[start:start + 500]
        repository.get_many(session, kind, [rid for rid, _ in chunk])  # one query fills the identity map
        for rid, data in chunk:
            _, changed = _upsert_counting(session, kind, rid, data)
            stored += changed
            unchanged += not changed
        session.commit()
    if stored:
        notify_changed(state)
    return {"stored": stored, "unchanged": unchanged, "failed": len(errors), "errors": errors}


def _upsert_counting(session: Any, kind: RecordKind, rid: str, data: dict[str, Any]) -> tuple[Any, bool]:
    """Upsert and tell whether anything changed (created or different content)."""
    before = repository.get(session, kind, rid)
    old_hash = before.content_hash if before is not None else None
    row, _ = repository.upsert(session, kind, rid, data)
    return row, row.content_hash != old_hash


needs_router = make_router("need")
capabilities_router = make_router("capability")
