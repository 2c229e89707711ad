"""`RequestMetrics`: what one finished request adds to the process's metrics."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import Surface
from neuronetz_gateway.observability.request_metrics import RequestMetrics
from neuronetz_gateway.outcome import Ending, Outcome
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route


def exchange(
    route: Route | None,
    *,
    tenant: str | None = None,
    marked: bool = False,
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
            tenant_id=uuid.uuid4(),
            tenant_name=tenant,
            key_id=uuid.uuid4(),
            key_prefix="nz_x",
            tenant_metrics=marked,
        )
        done.model = "llama3.1:8b"
    done.upstream_ms, done.upstream = upstream_ms, "ollama:11434" if upstream_ms else None
    done.first_byte_ms = 1.0
    done.prompt_tokens, done.completion_tokens = tokens
    return done


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_served_request_counts_everywhere() -> None:
    metrics = RequestMetrics(max_tenants=0)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    labels = {"route": "/api/chat", "status": "200", "outcome": "ok"}
    before = value("neuronetz_requests_total", **labels)
    timed = value("neuronetz_request_duration_seconds_count", route="/api/chat")
    upstream = {"route": "/api/chat", "upstream": "ollama:11434"}
    upstream_before = value("neuronetz_upstream_duration_seconds_count", **upstream)
    model = {"model": "llama3.1:8b"}
    prompt = value("neuronetz_tokens_total", direction="prompt", **model)
    completion = value("neuronetz_tokens_total", direction="completion", **model)
    for _ in range(2):
        served = exchange(routes.CHAT, tenant=tenant, upstream_ms=3, tokens=(4, 6))
        metrics.observe(served, Ending(Outcome.OK, 200), 5.0)
    assert value("neuronetz_requests_total", **labels) == before + 2
    assert value("neuronetz_request_duration_seconds_count", route="/api/chat") == timed + 2
    assert value("neuronetz_upstream_duration_seconds_count", **upstream) == upstream_before + 2
    assert value("neuronetz_tokens_total", direction="prompt", **model) == prompt + 8
    assert value("neuronetz_tokens_total", direction="completion", **model) == completion + 12
    # An unmarked tenant's name appears in no series.
    assert not [s for m in REGISTRY.collect() for s in m.samples if tenant in s.labels.values()]


def test_refusals_are_the_gateways_own() -> None:
    metrics = RequestMetrics(max_tenants=0)
    denied = value("neuronetz_refusals_total", reason="auth_failed")
    client_errors = value("neuronetz_refusals_total", reason="client_error")
    metrics.observe(exchange(routes.CHAT), Ending(Outcome.AUTH_FAILED, 401), 1.0)
    # An upstream 400 passed on is the upstream's answer, not a refusal of the gateway.
    passed_on = exchange(routes.CHAT, tenant="t", upstream_ms=1)
    metrics.observe(passed_on, Ending(Outcome.CLIENT_ERROR, 400), 1)
    assert value("neuronetz_refusals_total", reason="auth_failed") == denied + 1
    assert value("neuronetz_refusals_total", reason="client_error") == client_errors


def test_paths_outside_the_allowlist_share_one_label() -> None:
    metrics = RequestMetrics(max_tenants=0)
    labels = {"route": "other", "status": "403", "outcome": "forbidden"}
    before = value("neuronetz_requests_total", **labels)
    metrics.observe(exchange(None), Ending(Outcome.FORBIDDEN, 403), 0.1)
    assert value("neuronetz_requests_total", **labels) == before + 1
    assert value("neuronetz_requests_total", **{**labels, "route": "/api/pull"}) == 0


def test_in_flight_rises_and_falls() -> None:
    metrics = RequestMetrics(max_tenants=0)
    before = value("neuronetz_in_flight_requests")
    metrics.started()
    assert value("neuronetz_in_flight_requests") == before + 1
    metrics.finished()
    assert value("neuronetz_in_flight_requests") == before


def test_added_latency_is_the_time_outside_the_upstream_exchange() -> None:
    metrics = RequestMetrics(max_tenants=0)
    count = value("neuronetz_added_latency_seconds_count", route="/api/embed")
    total = value("neuronetz_added_latency_seconds_sum", route="/api/embed")
    served = exchange(routes.EMBED, tenant="t", upstream_ms=30.0)
    metrics.observe(served, Ending(Outcome.OK, 200), 32.5)
    # A refusal never reached an upstream: its time is no added latency.
    metrics.observe(exchange(routes.EMBED), Ending(Outcome.AUTH_FAILED, 401), 4.0)
    assert value("neuronetz_added_latency_seconds_count", route="/api/embed") == count + 1
    added = value("neuronetz_added_latency_seconds_sum", route="/api/embed") - total
    assert abs(added - 0.0025) < 1e-9


def test_marked_tenants_are_counted_by_name() -> None:
    metrics = RequestMetrics(max_tenants=5)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    for outcome, tokens in (
        (Outcome.OK, (4, 6)),
        (Outcome.OK, (1, 2)),
        (Outcome.CANCELLED, (3, 0)),
    ):
        done = exchange(routes.CHAT, tenant=tenant, marked=True, tokens=tokens)
        metrics.observe(done, Ending(outcome, 200), 5.0)
    refused = exchange(routes.CHAT, tenant=tenant, marked=True)
    metrics.observe(refused, Ending(Outcome.RATE_LIMITED, 429), 1)

    requests = "neuronetz_tenant_requests_total"
    assert value(requests, tenant=tenant, outcome="ok") == 2
    assert value(requests, tenant=tenant, outcome="cancelled") == 1
    assert value(requests, tenant=tenant, outcome="rate_limited") == 1
    assert value("neuronetz_tenant_tokens_total", tenant=tenant, direction="prompt") == 8
    assert value("neuronetz_tenant_tokens_total", tenant=tenant, direction="completion") == 8


def test_marked_tenants_beyond_the_cap_get_no_series() -> None:
    metrics = RequestMetrics(max_tenants=2)
    tenants = [f"t-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    with capture_logs() as logs:
        for _ in range(2):
            for tenant in tenants:
                done = exchange(routes.CHAT, tenant=tenant, marked=True)
                metrics.observe(done, Ending(Outcome.OK, 200), 1.0)
    counted = [value("neuronetz_tenant_requests_total", tenant=t, outcome="ok") for t in tenants]
    assert counted == [2, 2, 0]
    warnings = [entry for entry in logs if entry["event"] == "tenant_metrics_cap_reached"]
    assert [(w["tenant"], w["max_tenants"]) for w in warnings] == [(tenants[2], 2)]  # once
