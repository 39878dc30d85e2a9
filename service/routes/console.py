"""The web console: `/` serves its page, `/console/*` its static assets (no build step).

The assets have fixed names (no content hash), so browsers must revalidate them on every load
(`no-cache` + ETag → a cheap 304) instead of keeping a stale copy after an upgrade. A strict
Content-Security-Policy keeps the admin token in sessionStorage out of reach of injected script.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from service.errors import ApiError

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter(include_in_schema=False)


def asset_path(name: str) -> Path:
    """The console file for a URL path, refusing anything outside the folder or of an unknown type."""
    try:
        candidate = (CONSOLE_DIR / name).resolve()
    except (ValueError, OSError):  # e.g. an embedded NUL (/console/index.html%00.py)
        raise ApiError(404, "not_found", "no such console asset") from None
    if (not candidate.is_relative_to(CONSOLE_DIR) or not candidate.is_file()
            or candidate.suffix not in CONTENT_TYPES):
        raise ApiError(404, "not_found", f"no console asset '{name}'")
    return candidate


def serve(request: Request, path: Path) -> Response:
    response = FileResponse(path, media_type=CONTENT_TYPES[path.suffix], stat_result=path.stat(),
                            headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})
    etag = response.headers.get("etag")
    if etag and etag in request.headers.get("if-none-match", ""):
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() in ("etag", "cache-control", "last-modified")}
        return Response(status_code=304, headers=headers)
    return response


@router.get("/", summary="Web console (场景供需匹配控制台)")
def console_page(request: Request) -> Response:
    return serve(request, asset_path("index.html"))


@router.get("/console")
def console_redirect() -> RedirectResponse:
    return RedirectResponse("/", status_code=307)


@router.get("/console/{name:path}")
def console_asset(name: str, request: Request) -> Response:
    return serve(request, asset_path(name))
