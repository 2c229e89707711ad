"""Per-tenant usage as metrics, for the tenants an operator marked (docs/OBSERVABILITY.md).

`set-limits --tenant T --metrics on` marks a tenant; its requests (by outcome) and
tokens (by direction) are then counted under its name in `neuronetz_tenant_*`. Every
other tenant stays out of the metrics entirely (their usage is in `usage_daily`). The
label space is bounded twice: by what operators mark, and, in each process, by
`METRICS_MAX_TENANTS`: a marked tenant beyond that many is not exported (logged once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.observability import metrics
from neuronetz_gateway.outcome import Outcome

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _TenantSeries:
    """One tenant's counters, resolved once (`.labels()` costs a few µs per call)."""

    name: str
    prompt: Counter
    completion: Counter
    requests: dict[Outcome, Counter] = field(default_factory=dict)

    def count(self, exchange: Exchange, outcome: Outcome) -> None:
        requests = self.requests.get(outcome)
        if requests is None:
            requests = metrics.TENANT_REQUESTS.labels(self.name, outcome.value)
            self.requests[outcome] = requests
        requests.inc()
        if exchange.prompt_tokens > 0:
            self.prompt.inc(exchange.prompt_tokens)
        if exchange.completion_tokens > 0:
            self.completion.inc(exchange.completion_tokens)


class TenantMetrics:
    """Counts finished requests of marked tenants, at most `max_tenants` of them."""

    def __init__(self, max_tenants: int) -> None:
        self._max_tenants = max_tenants
        # None: marked, but past the cap in this process.
        self._tenants: dict[str, _TenantSeries | None] = {}
        self._exported = 0

    def count(self, tenant: str, exchange: Exchange, outcome: Outcome) -> None:
        """Count `exchange`, a finished request of the marked tenant called `tenant`
        that ended as `outcome`."""
        if tenant in self._tenants:
            series = self._tenants[tenant]
        else:
            series = self._tenants[tenant] = self._admit(tenant)
        if series is not None:
            series.count(exchange, outcome)

    def _admit(self, tenant: str) -> _TenantSeries | None:
        if self._exported >= self._max_tenants:
            log.warning(
                "tenant_metrics_cap_reached",
                tenant=tenant,
                max_tenants=self._max_tenants,
                detail="this marked tenant gets no series; raise METRICS_MAX_TENANTS",
            )
            return None
        self._exported += 1
        return _TenantSeries(
            tenant,
            metrics.TENANT_TOKENS.labels(tenant, "prompt"),
            metrics.TENANT_TOKENS.labels(tenant, "completion"),
        )
