"""`GatewayRuntime`: the stages and background tasks of one process, wired together.

Built by the app's lifespan from `Settings` and `Resources`; started and closed there.
The pipeline reads every stage from here, so a stage can be read and tested alone.
Construction opens nothing; `start()` starts the background services in order on an
`AsyncExitStack`, so a start that fails half-way closes exactly what it had started,
in reverse order, and `aclose()` closes everything the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import structlog

from neuronetz_gateway import backends
from neuronetz_gateway.audit import AuditRecord, AuditWriter, PromptLogRecord, RetentionTask
from neuronetz_gateway.audit.records import prompt_log_expires_at
from neuronetz_gateway.auth.authenticator import Authenticator
from neuronetz_gateway.auth.keys import key_hasher
from neuronetz_gateway.auth.throttle import FailureBudget
from neuronetz_gateway.auth.verifier import KeyVerifier
from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.catalog.discovery import DiscoveryTask
from neuronetz_gateway.catalog.models import Catalog
from neuronetz_gateway.config import Settings
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.db.notify import ChangeHandlers, ConfigChange
from neuronetz_gateway.limits import Limiter, PostgresUsageSource
from neuronetz_gateway.observability.access_log import AccessLog
from neuronetz_gateway.observability.request_metrics import RequestMetrics
from neuronetz_gateway.observability.sampler import MetricsSampler
from neuronetz_gateway.outcome import decide
from neuronetz_gateway.proxy.probe import UpstreamProber
from neuronetz_gateway.proxy.upstreams import UpstreamPool
from neuronetz_gateway.resources import Resources
from neuronetz_gateway.scheduler import SlotScheduler
from neuronetz_gateway.scheduler.factory import create_queue
from neuronetz_gateway.scheduler.service import QueueService

if TYPE_CHECKING:  # OpenTelemetry is imported only when tracing is on
    from neuronetz_gateway.observability.tracing import Tracing

log = structlog.get_logger(__name__)

ARGON2_QUEUE_LIMIT = 64
# At shutdown, requests the server cancelled get this long to settle and be audited
# before the audit buffer is flushed for the last time.
DRAIN_TIMEOUT_SECONDS = 5.0


class BufferedUsageSource:
    """Usage from Postgres plus what this process has not written yet (docs/REFERENCE.md §4.6)."""

    def __init__(self, database: PostgresUsageSource, audit: AuditWriter) -> None:
        self._database = database
        self._audit = audit

    async def used_tokens(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID | None, since: date | None
    ) -> int:
        stored = await self._database.used_tokens(tenant_id, key_id, since)
        return stored + self._audit.pending_usage(tenant_id, key_id, since)


class GatewayRuntime:
    def __init__(self, settings: Settings, resources: Resources) -> None:
        self.settings = settings
        self.resources = resources
        self.verifier = KeyVerifier(
            key_hasher(settings),
            parallelism=max(1, settings.argon2_parallelism),
            queue_limit=ARGON2_QUEUE_LIMIT,
        )
        self.authenticator = Authenticator(
            resources.engine,
            self.verifier,
            cache_ttl_seconds=settings.key_cache_ttl_seconds,
            failures=FailureBudget(
                global_burst=settings.auth_failure_burst,
                global_per_second=settings.auth_failures_per_second,
            ),
        )
        self.catalog = Catalog()
        self.upstreams = UpstreamPool(settings.upstream_urls)
        self.prober = UpstreamProber(
            self.upstreams, resources.upstream, settings.readiness_timeout_seconds
        )
        self.audit = AuditWriter(resources.engine, settings)
        self.limiter: Limiter = backends.create_limiter(
            settings,
            resources.scripts,
            BufferedUsageSource(PostgresUsageSource(resources.engine), self.audit),
        )
        shared = resources.redis is not None
        queue = create_queue(settings, resources.scripts, self.upstreams, shared=shared)
        self.scheduler: SlotScheduler | None = queue[0] if queue is not None else None
        self.queue: QueueService | None = queue[1] if queue is not None else None
        self.discovery = DiscoveryTask(resources.engine, resources.upstream, settings, self.catalog)
        self.retention = RetentionTask(resources.engine, settings)
        self.metrics = RequestMetrics(settings.metrics_max_tenants)
        self.access_log = AccessLog(settings.log_level, settings.log_format)
        self.sampler = MetricsSampler(self.audit, self.authenticator)
        # Set by the app's lifespan when OTEL_EXPORTER_OTLP_ENDPOINT is (docs/OBSERVABILITY.md).
        self.tracing: Tracing | None = None
        self._stack = contextlib.AsyncExitStack()
        self._in_flight = 0
        self._drained: asyncio.Event | None = None
        self.listener = backends.create_change_feed(
            settings,
            resources.engine,
            ChangeHandlers(
                on_key_revoked=self.authenticator.evict_prefix,
                on_config_changed=self._on_config_changed,
                on_reconnect=self._on_reconnect,
            ),
            on_models_changed=self._reload_catalog,
        )

    @property
    def services(self) -> tuple[BackgroundTask, ...]:
        """The background services in start order. They close in reverse order, so the
        audit writer flushes after every service that could still record."""
        services: tuple[BackgroundTask, ...] = (
            self.sampler,
            self.audit,
            self.listener,
            self.discovery,
            self.retention,
            self.prober,
        )
        return services if self.queue is None else (*services, self.queue)

    async def start(self) -> None:
        """Start every service in order (once); if one fails, close those started, in
        reverse order, and raise."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.verifier.close)
            for service in self.services:
                await service.start()
                stack.push_async_callback(service.aclose)
            self._stack = stack.pop_all()

    async def aclose(self) -> None:
        """Close what `start` started, in reverse order, then the verifier (nothing
        twice; also for a runtime whose start never ran)."""
        try:
            await self._stack.aclose()
        finally:
            self.verifier.close()

    # -- requests in the pipeline -------------------------------------------------------

    def request_started(self) -> None:
        """A request entered the pipeline; pair with `request_finished` after `record`."""
        self._in_flight += 1
        self.metrics.started()

    def request_finished(self) -> None:
        self._in_flight -= 1
        self.metrics.finished()
        if self._in_flight == 0 and self._drained is not None:
            self._drained.set()

    async def drain(self, timeout: float = DRAIN_TIMEOUT_SECONDS) -> None:  # noqa: ASYNC109 - one bounded wait
        """Wait until no request is in the pipeline (at most `timeout` s); before `aclose`.

        At shutdown the server cancels what outlived its grace period and then, without
        waiting, stops the application: the cancelled requests still settle and audit,
        and their records must reach the buffer before its final flush.
        """
        if self._in_flight == 0:
            return
        self._drained = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            log.error("requests_not_drained", in_flight=self._in_flight)

    # -- change feed --------------------------------------------------------------------

    def _on_config_changed(self, change: ConfigChange) -> None:
        self.authenticator.evict(change.tenant_id, change.key_id)

    async def _on_reconnect(self) -> None:
        self.authenticator.clear()

    async def _reload_catalog(self) -> None:
        await self.catalog.reload(self.resources.engine)

    # -- after every request ------------------------------------------------------------

    def record(self, exchange: Exchange) -> None:
        """Audit, count and log the finished exchange (the audit row is written later)."""
        principal = exchange.principal
        now = datetime.now(UTC)
        latency_ms = exchange.latency_ms
        prompt_log = None
        if principal is not None and exchange.prompt_request is not None:
            prompt_log = PromptLogRecord(
                request=exchange.prompt_request,
                response="".join(exchange.response_text or ()),
                expires_at=prompt_log_expires_at(
                    now, principal.prompt_log_ttl_hours, self.settings
                ),
            )
        ending = decide(exchange)
        self.audit.submit(
            AuditRecord(
                request_id=exchange.request_id,
                ts=now,
                tenant_id=principal.tenant_id if principal else None,
                key_id=principal.key_id if principal else None,
                method=exchange.method[:16],
                route=exchange.audit_route,
                model=exchange.model,
                status_code=ending.status,
                outcome=ending.outcome,
                prompt_tokens=exchange.prompt_tokens,
                completion_tokens=exchange.completion_tokens,
                latency_ms=latency_ms,
                upstream_ms=exchange.upstream_ms,
                client_ip=exchange.client_ip,
                user_agent=exchange.user_agent,
                prompt_log=prompt_log,
                client_request_id=exchange.client_request_id,
                queue_ms=exchange.queue_ms,
            )
        )
        self.metrics.observe(exchange, ending, latency_ms)
        self.access_log.write(exchange, ending, latency_ms)
        if exchange.trace is not None:
            try:
                exchange.trace.finish(exchange, ending)
            except Exception:  # a trace must never fail a request that was served
                log.exception("trace_not_finished", request_id=exchange.request_id)
