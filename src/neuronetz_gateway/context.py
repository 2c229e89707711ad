"""`Exchange`: one request and its response as it moves through the pipeline.

The stages read from it and record on it what the audit row and the access log need
(who, which model, status, outcome, tokens, timings). It also owns the ASGI `send`
so that responses go out through one place that knows whether one has started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Receive, Scope, Send

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.db.tables import Outcome
from neuronetz_gateway.errors import Surface
from neuronetz_gateway.policy.routes import Route


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
    status: int = 0
    outcome: Outcome = Outcome.OK
    prompt_tokens: int = 0
    completion_tokens: int = 0
    upstream_ms: float | None = None
    # `host:port` of the server that answered (the `upstream` label of upstream metrics).
    upstream: str | None = None
    first_byte_ms: float | None = None
    response_started: bool = False
    response_complete: bool = False
    disconnected: bool = False
    # Headers every response of this exchange carries (e.g. x-ratelimit-*).
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Prompt logging (REFERENCE.md §4.10): the request as sent and the response text as relayed.
    prompt_request: Any = None
    response_text: list[str] | None = None

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def header(self, name: bytes) -> bytes | None:
        """The first value of request header `name` (lower-case bytes)."""
        for key, value in self.scope["headers"]:
            if key == name:
                return bytes(value)
        return None
