"""`RequestMetrics`: what one finished request adds to the process's metrics."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.db.tables import Outcome
from neuronetz_gateway.errors import Surface
from neuronetz_gateway.observability.request_metrics import RequestMetrics
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route


def exchange(
    route: Route | None,
    status: int,
    outcome: Outcome,
    *,
    tenant: str | None = None,
    upstream_ms: float | None = None,
    tokens: tuple[int, int] = (0, 0),
) -> Exchange:
    done = Exchange(
        scope={"headers": []},
        receive=None,  # type: ignore[arg-type]  # never called: the request is over
        send=None,  # type: ignore[arg-type]  # never called: the request is over
        request_id=uuid.uuid4().hex,
        method="POST",
        surface=Surface.NATIVE,
        audit_route=route.name if route else "/api/pull",
        client_ip="127.0.0.1",
        user_agent=None,
        route=route,
    )
    if tenant is not None:
        done.principal = Principal(
            tenant_id=uuid.uuid4(), tenant_name=tenant, key_id=uuid.uuid4(), key_prefix="nz_x"
        )
        done.model = "llama3.1:8b"
    done.status, done.outcome = status, outcome
    done.upstream_ms, done.upstream = upstream_ms, "ollama:11434" if upstream_ms else None
    done.first_byte_ms = 1.0
    done.prompt_tokens, done.completion_tokens = tokens
    return done


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_served_request_counts_everywhere() -> None:
    metrics = RequestMetrics()
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    labels = {"route": "/api/chat", "status": "200", "outcome": "ok"}
    before = value("neuronetz_requests_total", **labels)
    timed = value("neuronetz_request_duration_seconds_count", route="/api/chat")
    upstream = {"route": "/api/chat", "upstream": "ollama:11434"}
    upstream_before = value("neuronetz_upstream_duration_seconds_count", **upstream)
    for _ in range(2):
        served = exchange(routes.CHAT, 200, Outcome.OK, tenant=tenant, upstream_ms=3, tokens=(4, 6))
        metrics.observe(served, 5.0)
    assert value("neuronetz_requests_total", **labels) == before + 2
    assert value("neuronetz_request_duration_seconds_count", route="/api/chat") == timed + 2
    assert value("neuronetz_upstream_duration_seconds_count", **upstream) == upstream_before + 2
    model = {"model": "llama3.1:8b", "tenant": tenant}
    assert value("neuronetz_tokens_total", direction="prompt", **model) == 8
    assert value("neuronetz_tokens_total", direction="completion", **model) == 12


def test_refusals_are_the_gateways_own() -> None:
    metrics = RequestMetrics()
    denied = value("neuronetz_refusals_total", reason="auth_failed")
    client_errors = value("neuronetz_refusals_total", reason="client_error")
    metrics.observe(exchange(routes.CHAT, 401, Outcome.AUTH_FAILED), 1.0)
    # An upstream 400 passed on is the upstream's answer, not a refusal of the gateway.
    metrics.observe(exchange(routes.CHAT, 400, Outcome.CLIENT_ERROR, tenant="t", upstream_ms=1), 1)
    assert value("neuronetz_refusals_total", reason="auth_failed") == denied + 1
    assert value("neuronetz_refusals_total", reason="client_error") == client_errors


def test_paths_outside_the_allowlist_share_one_label() -> None:
    metrics = RequestMetrics()
    labels = {"route": "other", "status": "403", "outcome": "forbidden"}
    before = value("neuronetz_requests_total", **labels)
    metrics.observe(exchange(None, 403, Outcome.FORBIDDEN), 0.1)
    assert value("neuronetz_requests_total", **labels) == before + 1
    assert value("neuronetz_requests_total", **{**labels, "route": "/api/pull"}) == 0


def test_in_flight_rises_and_falls() -> None:
    metrics = RequestMetrics()
    before = value("neuronetz_in_flight_requests")
    metrics.started()
    assert value("neuronetz_in_flight_requests") == before + 1
    metrics.finished()
    assert value("neuronetz_in_flight_requests") == before


def test_added_latency_is_the_time_outside_the_upstream_exchange() -> None:
    metrics = RequestMetrics()
    count = value("neuronetz_added_latency_seconds_count", route="/api/embed")
    total = value("neuronetz_added_latency_seconds_sum", route="/api/embed")
    metrics.observe(exchange(routes.EMBED, 200, Outcome.OK, tenant="t", upstream_ms=30.0), 32.5)
    # A refusal never reached an upstream: its time is no added latency.
    metrics.observe(exchange(routes.EMBED, 401, Outcome.AUTH_FAILED), 4.0)
    assert value("neuronetz_added_latency_seconds_count", route="/api/embed") == count + 1
    added = value("neuronetz_added_latency_seconds_sum", route="/api/embed") - total
    assert abs(added - 0.0025) < 1e-9
