"""The uniform error body: {"error": {"code", "message", "details"}}, never a stack trace."""
from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("scenematch.errors")

STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
    503: "not_ready",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
    )


def describe_validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Field path and reason for each problem; the input value is left out (it may be huge)."""
    out = []
    for err in errors:
        # Only the leading location is dropped: a field may itself be called "query" (POST /v1/search).
        parts = list(err.get("loc", ()))
        if parts and parts[0] in ("body", "path", "query", "header", "cookie"):
            parts = parts[1:]
        loc = [str(p) for p in parts]
        out.append({
            "field": ".".join(loc) or "body",
            "reason": err.get("msg", "invalid"),
            "type": err.get("type", "invalid"),
        })
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = describe_validation_errors(list(exc.errors()))
        if any(d["type"] == "json_invalid" for d in details):
            return error_response(400, "invalid_json", "request body is not valid JSON (UTF-8)", details)
        fields = ", ".join(sorted({d["field"] for d in details}))
        return error_response(422, "validation_error", f"invalid input: {fields}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names only the first route whose path matched (e.g. PUT for
            # /v1/needs/bulk); RFC 9110 wants every method the resource supports.
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return error_response(exc.status_code, code, message, None, headers)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        if "database is locked" in str(exc.orig):
            # SQLite's single writer stayed busy past the 30 s busy timeout (many concurrent bulk
            # writes, docs/reliability.md): reachable, only overloaded, and worth a retry.
            log.warning("database write lock not obtained within the busy timeout")
            return error_response(503, "database_busy", "the database is busy with other writes; retry later",
                                  headers={"Retry-After": "5"})
        log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
        return error_response(503, "database_unavailable", "the database is not reachable; retry later",
                              headers={"Retry-After": "5"})

    @app.exception_handler(PoolTimeout)
    async def _db_busy(_: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection free within the pool timeout")
        return error_response(503, "database_busy", "the service is overloaded; retry later",
                              headers={"Retry-After": "5"})

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the validation let through (e.g. NUL in a PostgreSQL
        # text filter): the caller's input, so a 422 naming the parameter, not a 500.
        log.warning("database refused a value: %s", type(exc.orig).__name__ if exc.orig else exc)
        return error_response(422, "invalid_value", "a value cannot be stored or compared by the database",
                              unstorable_fields(exc.params))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")

    document_error_responses(app)


def unstorable_fields(params: Any) -> list[dict[str, str]]:
    """The statement parameters holding NUL, named as the API names them (region_1 → region)."""
    rows = params if isinstance(params, (list, tuple)) else [params]
    names = sorted({re.sub(r"_\d+$", "", str(key)) for row in rows if isinstance(row, dict)
                    for key, value in row.items() if isinstance(value, str) and "\x00" in value})
    reason = "contains a NUL character (\\u0000), which cannot be stored"
    return [{"field": name, "reason": reason, "type": "value_error"} for name in names] or [
        {"field": "body", "reason": "a value is out of the range the database accepts", "type": "value_error"}]


def allowed_methods(request: Request) -> str:
    # Asked of the router method by method: included routers hide their routes' methods.
    routes = request.app.router.routes
    return ", ".join(m for m in HTTP_METHODS if any(
        route.matches({**request.scope, "method": m})[0] == Match.FULL for route in routes))


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


ERROR_SCHEMA = {
    "title": "ErrorResponse", "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "details": {"description": "Which field and why, when the input was at fault"}}}},
}
COMMON_ERRORS = {
    400: "Body is not valid JSON", 413: "Body too large", 422: "Invalid input (field and reason in details)",
    503: "Index not loaded yet, or the database is unreachable (retry later)",
}


def document_error_responses(app: FastAPI) -> None:
    """Make /openapi.json say what the handlers above really send for errors.

    FastAPI documents 422 as {"detail": [...]} and knows nothing of the body limit, invalid
    JSON or an unreachable database; every one of them is the uniform error body here.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorResponse"] = ERROR_SCHEMA
        content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                codes = []
                if "requestBody" in operation:
                    codes += [400, 413, 422]
                if operation.get("parameters"):
                    codes.append(422)
                if path.startswith("/v1/") and path != "/v1/domains":
                    codes.append(503)
                for code in codes:
                    responses.setdefault(str(code), {"description": COMMON_ERRORS[code]})
                for code, response in responses.items():
                    if code.isdigit() and int(code) >= 400:
                        response["content"] = content
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
