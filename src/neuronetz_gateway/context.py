"""`Exchange`: one request and its response as it moves through the pipeline.

The stages read from it and record on it what the audit row and the access log need:
who, which model, tokens, timings, and the facts from which `outcome.decide` derives
how the request ended (status sent, response complete, client gone, cut short, the
error told, an internal failure). It also owns the ASGI `send` so that responses go
out through one place that knows whether one has started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.types import Receive, Scope, Send

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.errors import GatewayError, Surface
from neuronetz_gateway.policy.routes import Route

if TYPE_CHECKING:  # OpenTelemetry is imported only when tracing is on
    from neuronetz_gateway.observability.tracing import RequestTrace


@dataclass(slots=True, eq=False)
class Exchange:
    scope: Scope
    receive: Receive
    send: Send
    request_id: str  # the gateway's own (audit_log.request_id)
    method: str
    surface: Surface
    audit_route: str
    client_ip: str | None
    user_agent: str | None
    route: Route | None = None
    client_request_id: str | None = None  # the client's X-Request-ID, when well-formed
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    upstream_ms: float | None = None
    # Milliseconds waited for a slot (docs/SCHEDULING.md); None: the request took none.
    queue_ms: float | None = None
    # `host:port` of the server that answered (the `upstream` label of upstream metrics).
    upstream: str | None = None
    first_byte_ms: float | None = None
    # Facts (see outcome.decide). The status sent; 0 until the response starts.
    status: int = 0
    response_complete: bool = False
    # The client went away (disconnect seen while reading the body or relaying).
    disconnected: bool = False
    # The server cancelled the request before its response was complete (shutdown).
    cut_short: bool = False
    # The error the client was told about, as the response or in-band in a stream.
    error: GatewayError | None = None
    # A stage failed unexpectedly (a bug or a broken invariant, logged with its traceback).
    internal_error: bool = False
    # Headers every response of this exchange carries (e.g. x-ratelimit-*).
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Prompt logging (REFERENCE.md §4.10): the request as sent and the response text as relayed.
    prompt_request: Any = None
    response_text: list[str] | None = None
    # The request's spans when tracing is on (observability/tracing.py), else None: every
    # stage hook is one `is None` check.
    trace: RequestTrace | None = None

    @property
    def response_started(self) -> bool:
        return self.status != 0

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def header(self, name: bytes) -> bytes | None:
        """The first value of request header `name` (lower-case bytes)."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None
