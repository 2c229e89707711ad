"""Request id (docs/REFERENCE.md §4.1): accept a sane inbound `X-Request-ID`, else make one.

Pure ASGI so it wraps everything, error responses included. The id is stored in
`scope["state"]["request_id"]` and added to every response's headers.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neuronetz_gateway.ids import random_hex

_VALID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
HEADER = b"x-request-id"


def request_id_of(scope: Scope) -> str:
    """The id assigned to the request in `scope` ('-' outside the middleware)."""
    state = scope.get("state")
    if state is None:
        return "-"
    return str(state.get("request_id", "-"))


def _inbound_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == HEADER:
            return value.decode("ascii") if _VALID.fullmatch(value) else None
    return None


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _inbound_id(scope) or random_hex()
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k != HEADER]
                headers.append((HEADER, encoded))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
