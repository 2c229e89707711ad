"""Last line of defence (docs/REFERENCE.md §4.9): any unhandled exception becomes a generic 500.

The body names the request id and nothing else: no exception text, no stack trace.
If the response had already started, the connection is aborted instead (a half-sent
body cannot be turned into an error), which the ASGI server does when we re-raise.
"""

from __future__ import annotations

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neuronetz_gateway.errors import internal_error, render, surface_of_path
from neuronetz_gateway.middleware.request_id import request_id_of

log = structlog.get_logger("neuronetz_gateway.errors")


def internal_error_body(scope: Scope) -> bytes:
    """The generic 500 body in the shape of the request's surface."""
    return render(internal_error(request_id_of(scope)), surface_of_path(scope.get("path", "")))


class ErrorGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled_exception", request_id=request_id_of(scope))
            if started:
                raise
            body = internal_error_body(scope)
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
