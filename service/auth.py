"""Bearer-token checks: admin token for /v1/admin/* and restricted data, client tokens for writes."""
from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import ApiError
from service.settings import Settings


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _matches(token: str, expected: str | None) -> bool:
    # compare_digest keeps the comparison time independent of where the strings differ.
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())  # type: ignore[union-attr]


def is_admin(request: Request, settings: Settings) -> bool:
    token = bearer_token(request)
    return token is not None and _matches(token, settings.admin_token)


def check_admin(request: Request, settings: Settings) -> None:
    if not settings.admin_token:
        raise ApiError(403, "admin_disabled", "admin API is disabled: SCENEMATCH_ADMIN_TOKEN is not set")
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "unauthorized", "missing bearer token (Authorization: Bearer <token>)")
    if not _matches(token, settings.admin_token):
        raise ApiError(403, "forbidden", "the token is not the admin token")


def check_writer(request: Request, settings: Settings) -> None:
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "unauthorized", "writes need a bearer token (Authorization: Bearer <token>)")
    allowed = [settings.admin_token, *settings.client_token_list]
    # Check every candidate so the time taken does not reveal which one matched.
    if not any([_matches(token, t) for t in allowed]):
        raise ApiError(403, "forbidden", "the token is not allowed to write")
