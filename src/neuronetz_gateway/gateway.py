"""The gateway's ASGI entry: route policy first, then the pipeline (docs/REFERENCE.md §4.2).

Sits in front of the framework. Every request is classified from its raw path before
anything else happens: blocked endpoints get 403 (no authentication, nothing
forwarded), unknown paths 404 (naming the path and what the gateway serves), wrong
methods 405, the gateway's own endpoints go on to the framework, `GET`/`HEAD /` is
answered here as Ollama answers it, and allowlisted routes go to the pipeline. Refusals
here are audited like any other; the liveness answer is not (docs/REFERENCE.md §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from neuronetz_gateway import respond
from neuronetz_gateway.config import IPNetwork
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import GatewayError, surface_of_path, unavailable
from neuronetz_gateway.middleware.request_id import client_request_id_of, request_id_of
from neuronetz_gateway.outcome import Outcome
from neuronetz_gateway.pipeline import Pipeline
from neuronetz_gateway.policy.routes import SERVED, Decision, Verdict, canonical_path, classify
from neuronetz_gateway.proxy.headers import client_address
from neuronetz_gateway.runtime import GatewayRuntime

BLOCKED = GatewayError(403, "this endpoint is not available", Outcome.FORBIDDEN, code="forbidden")
# What Ollama answers on `/`, so that Ollama clients' checks pass.
LIVENESS_BODY = b"Ollama is running"
LIVENESS_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(LIVENESS_BODY)).encode()),
]
SHOWN_PATH_BYTES = 100
# Path characters shown as sent; anything else is percent-encoded in the message.
_SHOWN_SAFE = "/!$&'()*+,;=:@-._~%"

_USER_AGENT = b"user-agent"
_FORWARDED_FOR = b"x-forwarded-for"


@dataclass
class RuntimeHolder:
    """What the ASGI layer needs; the lifespan fills in the runtime and pipeline."""

    trusted_proxies: list[IPNetwork] = field(default_factory=list)
    runtime: GatewayRuntime | None = None
    pipeline: Pipeline | None = None

    def clear(self) -> None:
        """The process is stopping: new requests get 503."""
        self.runtime = self.pipeline = None


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, holder: RuntimeHolder) -> None:
        self.app = app
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        decision = classify(scope["method"], raw_path)
        if decision.verdict is Verdict.INTERNAL:
            await self.app(scope, receive, send)
            return
        if decision.verdict is Verdict.LIVENESS:
            await _liveness(scope, send)
            return
        runtime, pipeline = self.holder.runtime, self.holder.pipeline
        exchange = self._exchange(scope, receive, send, decision, raw_path)
        if decision.verdict is Verdict.ROUTE and decision.route is not None:
            if pipeline is None:
                await respond.error(exchange, unavailable("gateway is starting"))
                return
            await pipeline.handle(exchange, decision.route, decision.model)
            return
        await respond.error(exchange, _refusal(decision, raw_path))
        if runtime is not None:
            runtime.record(exchange)

    def _exchange(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision, raw_path: bytes
    ) -> Exchange:
        headers = scope["headers"]
        user_agent = None
        forwarded: list[bytes] = []
        for name, value in headers:
            if name == _USER_AGENT:
                user_agent = value.decode("latin-1")[:512]
            elif name == _FORWARDED_FOR:
                forwarded.append(value)
        client = scope.get("client")
        peer = client[0] if client else None
        trusted = self.holder.trusted_proxies
        route = decision.route
        return Exchange(
            scope=scope,
            receive=receive,
            send=send,
            request_id=request_id_of(scope),
            client_request_id=client_request_id_of(scope),
            method=scope["method"],
            surface=route.surface if route else surface_of_path(canonical_path(raw_path)),
            audit_route=decision.audit_route,
            client_ip=client_address(peer, forwarded, trusted) if trusted else peer,
            user_agent=user_agent,
            route=route,
        )


async def _liveness(scope: Scope, send: Send) -> None:
    """200 `Ollama is running`: no key needed, nothing forwarded, nothing audited."""
    await send({"type": "http.response.start", "status": 200, "headers": LIVENESS_HEADERS})
    body = b"" if scope["method"] == "HEAD" else LIVENESS_BODY
    await send({"type": "http.response.body", "body": body, "more_body": False})


def not_found(raw_path: bytes) -> GatewayError:
    """404 naming the path as sent and what the gateway serves."""
    shown = quote_from_bytes(raw_path[:SHOWN_PATH_BYTES], safe=_SHOWN_SAFE)
    if len(raw_path) > SHOWN_PATH_BYTES:
        shown += "…"
    message = f'no route for "{shown}": this gateway serves {SERVED}'
    return GatewayError(404, message, Outcome.NOT_FOUND, code="not_found")


def _refusal(decision: Decision, raw_path: bytes) -> GatewayError:
    if decision.verdict is Verdict.BLOCKED:
        return BLOCKED
    if decision.verdict is Verdict.METHOD_NOT_ALLOWED:
        return GatewayError(
            405,
            "method not allowed",
            Outcome.CLIENT_ERROR,
            code="method_not_allowed",
            headers={"allow": decision.allow or ""},
        )
    return not_found(raw_path)
