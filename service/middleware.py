"""Request-level concerns: body size limit, request ids and JSON access logs.

Both are plain ASGI callables (not BaseHTTPMiddleware) and every request passes through them,
GET /healthz included, so they do no work a request does not need: the 413 answer is built only
when it is sent, headers are scanned once without copying, and the access line is serialised
only when the logger would write it.
"""
from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_response

log = logging.getLogger("scenematch.access")


def header(scope: Scope, name: bytes) -> bytes | None:
    """The last value of a header, as dict(headers) gave it (ASGI servers lower-case names)."""
    found = None
    for key, value in scope.get("headers") or ():
        if key == name:
            found = value
    return found


class BodyLimitMiddleware:
    """Answer 413 for bodies over the limit, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def too_large(self) -> ASGIApp:
        return error_response(413, "payload_too_large", f"request body exceeds {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.too_large()(scope, receive, send)
            return
        # Buffer the body so an over-long chunked upload is refused before routing. A GET or a
        # small POST arrives in one message, which is passed on as it came.
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        first = message.get("body", b"")
        if len(first) > self.max_bytes:
            await self.too_large()(scope, receive, send)
            return
        if message.get("more_body", False):
            received, parts, more = len(first), [first], True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_bytes:
                    await self.too_large()(scope, receive, send)
                    return
                parts.append(chunk)
                more = message.get("more_body", False)
            first = b"".join(parts)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": first, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestIdMiddleware:
    """Give every request an id (or keep the caller's X-Request-ID), echo it, log one JSON line."""

    def __init__(self, app: ASGIApp, metrics_hook=None):  # noqa: ANN001
        self.app, self.metrics_hook = app, metrics_hook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = (header(scope, b"x-request-id") or b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"].append(id_header)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if self.metrics_hook is not None:
                self.metrics_hook(scope["method"], template, status, elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(json.dumps({
                    "request_id": request_id, "method": scope["method"], "path": scope["path"],
                    "route": template, "status": status, "ms": round(elapsed * 1000, 2),
                }, ensure_ascii=False))
