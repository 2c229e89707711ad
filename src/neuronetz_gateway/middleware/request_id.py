"""Request ids (docs/REFERENCE.md §4.1): the gateway's own for every request, and the
client's `X-Request-ID` echoed back.

Pure ASGI so it wraps everything, error responses included. Every request gets a new
random id of the gateway's (`scope["state"]["request_id"]`): the audit row's
`request_id`, the id in error messages and logs, and what Ollama sees. It is never
taken from the client, so a client cannot make audit rows collide. A client's
well-formed `X-Request-ID` (`[A-Za-z0-9._-]{1,128}`) is kept as
`scope["state"]["client_request_id"]`: logged, stored as `audit_log.client_request_id`,
and echoed.

Every response carries `X-Gateway-Request-ID: <ours>` and `X-Request-ID`: the client's
id when it sent a well-formed one, else ours — so a client that sends its own id gets
it back where it expects it, and every client can quote ours to an operator.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neuronetz_gateway.ids import random_hex

_VALID = re.compile(rb"[A-Za-z0-9._-]{1,128}")
HEADER = b"x-request-id"
GATEWAY_HEADER = b"x-gateway-request-id"


def request_id_of(scope: Scope) -> str:
    """The gateway's id of the request in `scope` ('-' outside the middleware)."""
    state = scope.get("state")
    if state is None:
        return "-"
    return str(state.get("request_id", "-"))


def client_request_id_of(scope: Scope) -> str | None:
    """The client's well-formed `X-Request-ID`, or None."""
    state = scope.get("state")
    return None if state is None else state.get("client_request_id")


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
        request_id = random_hex()
        client_id = _inbound_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["client_request_id"] = client_id
        ours = request_id.encode("ascii")
        echoed = client_id.encode("ascii") if client_id is not None else ours

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", ())
                    if k != HEADER and k != GATEWAY_HEADER
                ]
                headers.append((HEADER, echoed))
                headers.append((GATEWAY_HEADER, ours))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
