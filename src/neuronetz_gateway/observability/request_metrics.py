"""Recording one finished request in the Prometheus metrics (docs/REFERENCE.md §5).

Called once per request, refused ones too, so it is kept cheap: `.labels()` validates
and formats on every call, so each label combination is resolved once and its child
kept in a dict; afterwards a request costs a few dict lookups and increments.
Every label value comes from a bounded set: the route allowlist (or "other"), status
codes, outcomes, catalog models and configured upstreams; tenant names only for the
tenants an operator marked (`tenant_metrics`).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.observability import metrics
from neuronetz_gateway.observability.tenant_metrics import TenantMetrics
from neuronetz_gateway.outcome import Ending, Outcome

# Every path outside the allowlist (404s, 403s for blocked endpoints) shares one label,
# so a scanner cannot grow the label space.
OTHER_ROUTE = "other"
NO_LABEL = "none"

# Outcomes that mean the gateway itself said no. The same outcomes after an upstream
# answered (an upstream 400 or 404 passed on) are not refusals of the gateway.
REFUSALS = frozenset(
    {
        Outcome.CLIENT_ERROR,
        Outcome.AUTH_FAILED,
        Outcome.FORBIDDEN,
        Outcome.NOT_FOUND,
        Outcome.RATE_LIMITED,
        Outcome.BUDGET_EXCEEDED,
        Outcome.UNAVAILABLE,
    }
)


def route_label(exchange: Exchange) -> str:
    """The route's name for metrics: an allowlisted route, or "other"."""
    return exchange.route.name if exchange.route is not None else OTHER_ROUTE


class RequestMetrics:
    """Per-request metrics with label children resolved once per combination."""

    def __init__(self, max_tenants: int) -> None:
        """`max_tenants`: at most this many marked tenants get series (`TenantMetrics`)."""
        self._requests: dict[tuple[str, int, Outcome], Counter] = {}
        self._timings: dict[str, tuple[Histogram, Histogram, Histogram]] = {}
        self._upstream: dict[tuple[str, str], Histogram] = {}
        self._tokens: dict[str, tuple[Counter, Counter]] = {}
        self._refusals: dict[Outcome, Counter] = {}
        self._in_flight = metrics.IN_FLIGHT
        self._tenants = TenantMetrics(max_tenants)

    def started(self) -> None:
        """A request entered the pipeline."""
        self._in_flight.inc()

    def finished(self) -> None:
        """A request left the pipeline (after `observe`)."""
        self._in_flight.dec()

    def observe(self, exchange: Exchange, ending: Ending, latency_ms: float) -> None:
        """Count the finished `exchange`, which ended as `ending`: requests, timings,
        tokens and refusals."""
        route = route_label(exchange)
        outcome, status = ending
        counter = self._requests.get((route, status, outcome))
        if counter is None:
            counter = metrics.REQUESTS.labels(route, str(status), outcome.value)
            self._requests[(route, status, outcome)] = counter
        counter.inc()

        timings = self._timings.get(route)
        if timings is None:
            timings = (
                metrics.REQUEST_SECONDS.labels(route),
                metrics.TIME_TO_FIRST_BYTE_SECONDS.labels(route),
                metrics.ADDED_LATENCY_SECONDS.labels(route),
            )
            self._timings[route] = timings
        timings[0].observe(latency_ms / 1000.0)
        if exchange.first_byte_ms is not None:
            timings[1].observe(exchange.first_byte_ms / 1000.0)

        if exchange.upstream_ms is not None:
            # Time waiting for a slot is Ollama's capacity, not the gateway's own work.
            own = latency_ms - exchange.upstream_ms - (exchange.queue_ms or 0.0)
            timings[2].observe(max(0.0, own) / 1000.0)
            self._observe_upstream(route, exchange.upstream, exchange.upstream_ms)
        if exchange.prompt_tokens or exchange.completion_tokens:
            self._count_tokens(exchange)
        # Once the upstream answered, an error outcome is the upstream's, not a refusal.
        if outcome in REFUSALS and exchange.upstream_ms is None:
            refusals = self._refusals.get(outcome)
            if refusals is None:
                refusals = self._refusals[outcome] = metrics.REFUSALS.labels(outcome.value)
            refusals.inc()
        principal = exchange.principal
        if principal is not None and principal.tenant_metrics:
            self._tenants.count(principal.tenant_name, exchange, outcome)

    def _observe_upstream(self, route: str, upstream: str | None, elapsed_ms: float) -> None:
        key = (route, upstream or NO_LABEL)
        histogram = self._upstream.get(key)
        if histogram is None:
            histogram = self._upstream[key] = metrics.UPSTREAM_SECONDS.labels(*key)
        histogram.observe(elapsed_ms / 1000.0)

    def _count_tokens(self, exchange: Exchange) -> None:
        model = exchange.model or NO_LABEL
        counters = self._tokens.get(model)
        if counters is None:
            counters = (
                metrics.TOKENS.labels("prompt", model),
                metrics.TOKENS.labels("completion", model),
            )
            self._tokens[model] = counters
        if exchange.prompt_tokens > 0:
            counters[0].inc(exchange.prompt_tokens)
        if exchange.completion_tokens > 0:
            counters[1].inc(exchange.completion_tokens)
