"""The request pipeline: every allowlisted request, stage by stage (docs/ARCHITECTURE.md).

    route policy (gateway.py) → authenticate → read body → authorize model → admit
        → prepare body → proxy + relay → settle → record

`Pipeline.handle` is the whole story for one request; each stage lives in its own
module and refuses by raising `GatewayError`, which is answered here in the shape of
the surface. Stages record facts on the `Exchange`; `outcome.decide` turns them into
the audited outcome when the request is recorded. Two places always run: whatever
raises after admission, `_model_request` settles the admission (its `finally`);
whatever raises at all, `handle` answers the client and records the request.
"""

from __future__ import annotations

import asyncio

import orjson
import structlog

from neuronetz_gateway import respond
from neuronetz_gateway.api import listings
from neuronetz_gateway.auth.credentials import API_KEY, AUTHORIZATION, presented_key
from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.catalog.models import CatalogModel
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import (
    GatewayError,
    internal_error,
    model_not_found,
    shutting_down,
    unavailable,
)
from neuronetz_gateway.limits import (
    Admission,
    AdmissionRequest,
    LimiterUnavailable,
    Refused,
    Ticket,
    estimate_prompt_tokens,
)
from neuronetz_gateway.limits.lease_keeper import LeaseKeeper
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.access import may_use, visible_models
from neuronetz_gateway.policy.routes import Route, RouteKind
from neuronetz_gateway.proxy import body as bodies
from neuronetz_gateway.proxy import rewrite, surfaces
from neuronetz_gateway.proxy.forward import Forwarder, UpstreamRequest, upstream_failed
from neuronetz_gateway.proxy.observer import StreamObserver
from neuronetz_gateway.proxy.ps import loaded_models
from neuronetz_gateway.proxy.reading import ModelRequest, read_request
from neuronetz_gateway.proxy.usage import Usage
from neuronetz_gateway.proxy.watched import forward_watched
from neuronetz_gateway.refusals import refused_error
from neuronetz_gateway.runtime import GatewayRuntime
from neuronetz_gateway.scheduler import SlotRequest, WaitTicket

log = structlog.get_logger(__name__)

# A settlement that failed for a reason other than the store being down is tried this
# often: a lease left behind would hold one of the tenant's slots until it expires.
SETTLE_ATTEMPTS = 2


OUTPUT_CAP_HEADER = b"x-neuronetz-output-cap"


def output_cap_header(applied: int | None, asked: int | None) -> list[tuple[bytes, bytes]]:
    """`x-neuronetz-output-cap` when a budget set the cap or lowered the client's
    (docs/REFERENCE.md §12)."""
    if applied is None or (asked is not None and applied >= asked):
        return []
    return [(OUTPUT_CAP_HEADER, str(applied).encode())]


class Pipeline:
    def __init__(self, runtime: GatewayRuntime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.forwarder = Forwarder(runtime.resources.forwarding, runtime.upstreams)
        self.tracing = runtime.tracing  # None unless tracing is on
        self.leases = LeaseKeeper(runtime.limiter)

    async def handle(self, exchange: Exchange, route: Route, model_param: str | None) -> None:
        """Run one allowlisted request through every stage; never raises."""
        self.runtime.request_started()
        try:
            if self.tracing is not None:
                exchange.trace = self.tracing.start(exchange)  # finished by runtime.record
            await self._stages(exchange, route, model_param)
        except GatewayError as failure:
            await respond.fail(exchange, failure)
        except bodies.ClientGone:
            pass  # recorded by read_body; nobody is left to answer
        except asyncio.CancelledError:
            # The server ended its shutdown grace period (a client leaving is handled
            # where it happens). The stages have settled; the request ends here,
            # answered and recorded, since nobody awaits this task.
            _uncancel()
            if not exchange.response_complete:
                exchange.cut_short = True
                await respond.fail_quietly(exchange, shutting_down())
        except Exception:
            log.exception("internal_error", request_id=exchange.request_id, route=route.name)
            exchange.internal_error = True
            await respond.fail_quietly(exchange, internal_error(exchange.request_id))
        finally:
            try:
                self.runtime.record(exchange)
            finally:
                self.runtime.request_finished()

    async def _stages(self, exchange: Exchange, route: Route, model_param: str | None) -> None:
        declared = bodies.declared_length(exchange)
        if declared is not None and declared > self.settings.max_request_body_bytes:
            raise bodies.too_large(self.settings.max_request_body_bytes)
        key = presented_key(exchange.header(AUTHORIZATION), exchange.header(API_KEY))
        trace = exchange.trace
        if trace is not None:
            trace.begin("auth")  # a refusal leaves it open: ended as the request ended
        principal = await self.runtime.authenticator.authenticate(key, exchange.client_ip)
        exchange.principal = principal
        if trace is not None:
            trace.end("auth")
        if not self.runtime.audit.accepting:
            raise unavailable("audit log unavailable; retry shortly", retry_after=5)
        match route.kind:
            case RouteKind.MODEL:
                await self._model_request(exchange, route, principal)
            case RouteKind.SHOW:
                await self._show(exchange, route, principal)
            case RouteKind.COUNT_TOKENS:
                await self._count_tokens(exchange, route, principal)
            case RouteKind.LISTING:
                await self._listing(exchange, route, principal, model_param)
            case RouteKind.PASSTHROUGH:
                await self._passthrough(exchange, route)

    # -- routes ---------------------------------------------------------------------

    async def _model_request(self, exchange: Exchange, route: Route, principal: Principal) -> None:
        parsed = await self._read_request(exchange, route)
        model = self._authorize(exchange, principal, parsed.model)
        slot = self._slot_request(route, principal, model)  # before admission: one write
        try:
            estimate = estimate_prompt_tokens(parsed.prompt_text_bytes())
            surfaces.check_output_cap(route, parsed.client_cap)
            # Built before admission: from admission on, nothing may run outside the `try`.
            observer = surfaces.observer_for(route, collect_text=principal.prompt_logging)
            admission = await self._admit(exchange, route, principal, estimate, parsed.client_cap)
            try:
                self._admitted(exchange, admission)
                body = self._prepare(exchange, route, parsed, admission, observer)
                request = UpstreamRequest(
                    route, exchange.method, body, model.name, model.upstreams, slot=slot
                )
                await self._proxy(exchange, request, observer, admission.ticket)
            finally:
                await self._settle(exchange, route, admission.ticket, observer, estimate)
        finally:
            if slot is not None:  # a grant the request did not use goes back
                slot.close()

    def _slot_request(
        self, route: Route, principal: Principal, model: CatalogModel
    ) -> SlotRequest | None:
        """The claim on a slot of a request on a route that takes one (docs/SCHEDULING.md):
        it may wait `QUEUE_MAX_WAIT_SECONDS` in total over every attempt. Its first try
        starts now, so that it shares a write with the admission script sent next."""
        scheduler = self.runtime.scheduler
        if scheduler is None or not route.takes_slot:
            return None
        now = asyncio.get_running_loop().time()
        deadline = now + self.settings.queue_max_wait_seconds
        ticket = WaitTicket(str(principal.tenant_id), principal.tenant_weight, deadline, now)
        return scheduler.request(model.upstreams, ticket)

    async def _show(self, exchange: Exchange, route: Route, principal: Principal) -> None:
        parsed = await self._read_request(exchange, route)
        model = self._authorize(exchange, principal, parsed.model)
        await self._count_request(exchange, route, principal)
        request = UpstreamRequest(route, exchange.method, parsed.raw, model.name, model.upstreams)
        await self._proxy(exchange, request, StreamObserver(), None)

    async def _count_tokens(self, exchange: Exchange, route: Route, principal: Principal) -> None:
        """Messages' token counting, answered from the gateway's own prompt estimate."""
        parsed = await self._read_request(exchange, route)
        self._authorize(exchange, principal, parsed.model)
        estimate = estimate_prompt_tokens(parsed.prompt_text_bytes())
        await respond.complete(exchange, 200, orjson.dumps({"input_tokens": estimate}))

    async def _listing(
        self, exchange: Exchange, route: Route, principal: Principal, model_param: str | None
    ) -> None:
        visible = visible_models(principal, self.runtime.catalog)
        if route is routes.TAGS:
            await respond.complete(exchange, 200, listings.tags_body(visible))
        elif route is routes.V1_MODELS:
            await respond.complete(exchange, 200, listings.openai_models_body(visible))
        elif route is routes.V1_MODEL:
            name = self._authorize(exchange, principal, model_param or "").name
            model = next(m for m in visible if m.name == name)
            await respond.complete(exchange, 200, orjson.dumps(listings.openai_model(model)))
        else:  # /api/ps: Ollama knows what is loaded; the key sees only its models
            await self._count_request(exchange, route, principal)
            await self._ps(exchange, {m.name for m in visible})

    async def _ps(self, exchange: Exchange, visible: set[str]) -> None:
        answers = await loaded_models(
            self.runtime.resources.upstream,
            self.runtime.upstreams,
            self.settings.model_discovery_timeout_seconds,
        )
        try:
            merged = listings.merge_ps(answers, visible)
        except ValueError:
            raise upstream_failed() from None
        await respond.complete(exchange, 200, merged)

    async def _passthrough(self, exchange: Exchange, route: Route) -> None:
        await self._proxy(exchange, UpstreamRequest(route, exchange.method), StreamObserver(), None)

    # -- reading and authorizing ----------------------------------------------------------

    async def _read_request(self, exchange: Exchange, route: Route) -> ModelRequest:
        raw = await bodies.read_body(exchange, self.settings.max_request_body_bytes)
        return read_request(raw, route, self.settings.max_json_depth)

    def _authorize(self, exchange: Exchange, principal: Principal, requested: str) -> CatalogModel:
        """The catalog entry of `requested` if the key may use it; 404 otherwise."""
        catalog = self.runtime.catalog
        model = catalog.get(requested)
        if model is None or not may_use(principal, model.name, catalog):
            raise model_not_found(requested)
        exchange.model = model.name
        return model

    # -- admission, the body to forward, settlement --------------------------------------

    async def _admit(
        self,
        exchange: Exchange,
        route: Route,
        principal: Principal,
        estimate: int,
        client_cap: int | None,
    ) -> Admission:
        request = AdmissionRequest(
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            request_id=exchange.request_id,
            tenant_limits=principal.tenant_limits,
            key_limits=principal.key_limits,
            prompt_estimate=estimate,
            client_output_cap=client_cap,
            produces_output=route.produces_output,
        )
        trace = exchange.trace
        if trace is not None:
            trace.begin("admission")
        try:
            admission = await self.runtime.limiter.admit(request)
        except Refused as refusal:
            raise refused_error(refusal) from None
        except LimiterUnavailable:
            raise unavailable("rate limiting is temporarily unavailable") from None
        if trace is not None:
            trace.end("admission")
        return admission

    @staticmethod
    def _admitted(exchange: Exchange, admission: Admission) -> None:
        """Record an admission's rate-limit headers for every response of `exchange`."""
        exchange.extra_headers.extend(
            (name.encode(), value.encode()) for name, value in admission.headers.items()
        )

    async def _count_request(self, exchange: Exchange, route: Route, principal: Principal) -> None:
        """Count a request that asks Ollama but runs no model (`/api/show`, `/api/ps`)
        against `rpm`: no tokens, no concurrency slot, so nothing to settle."""
        self._admitted(
            exchange, await self._admit(exchange, route, principal.requests_only(), 0, None)
        )

    def _prepare(
        self,
        exchange: Exchange,
        route: Route,
        parsed: ModelRequest,
        admission: Admission,
        observer: StreamObserver,
    ) -> bytes:
        """The body to forward (`rewrite.prepare`: the admission's output cap applied,
        what a tenant may not ask of the shared Ollama removed), re-encoded only if
        that changed anything."""
        if observer.collect_text:
            # The body as the client sent it, before the rewrites change it.
            exchange.prompt_request = orjson.loads(parsed.raw)
        output_cap = admission.output_cap if route.produces_output else None
        if route.produces_output:
            exchange.extra_headers += output_cap_header(output_cap, parsed.client_cap)
        forwarded = rewrite.prepare(parsed, output_cap, self.settings)
        exchange.extra_headers.extend(forwarded.headers)
        observer.keep_usage_chunk = forwarded.wants_usage
        return forwarded.body

    async def _settle(
        self,
        exchange: Exchange,
        route: Route,
        ticket: Ticket,
        observer: StreamObserver,
        estimate: int,
    ) -> None:
        """Charge what the request used and release its lease and reservation. Runs
        whatever happened after admission, and never raises: a fault here would leave
        the tenant's lease and reservation held until they expire."""
        try:
            usage = self._usage(observer, estimate, exchange, route)
        except Exception:
            log.exception("usage_not_measured", request_id=exchange.request_id)
            exchange.internal_error = True
            usage = Usage(estimate, 0)
        exchange.prompt_tokens = usage.prompt_tokens
        exchange.completion_tokens = usage.completion_tokens
        if observer.collect_text:
            exchange.response_text = observer.text
        if ticket.is_noop:
            return  # nothing was counted: no round trip
        limiter = self.runtime.limiter
        for attempt in range(1, SETTLE_ATTEMPTS + 1):
            settle = limiter.settle(ticket, usage.prompt_tokens, usage.completion_tokens)
            try:
                # Shielded: a cancelled request (client gone) must still release its lease.
                await asyncio.shield(settle)
                return
            except (LimiterUnavailable, asyncio.CancelledError) as error:
                # The store is down (the lease expires by itself) or the settlement goes
                # on shielded: trying again would not help.
                log.warning("settlement_failed", error=type(error).__name__)
                return
            except Exception:
                log.exception("settlement_failed", request_id=exchange.request_id, attempt=attempt)
        exchange.internal_error = True

    @staticmethod
    def _usage(observer: StreamObserver, estimate: int, exchange: Exchange, route: Route) -> Usage:
        """Tokens to record: Ollama's counts, else what was seen (cancelled, legacy)."""
        if observer.usage is not None and (
            observer.usage.prompt_tokens or observer.usage.completion_tokens
        ):
            return observer.usage
        if exchange.response_started or route is routes.EMBEDDINGS:
            # No final count (client left, stream broke, /api/embeddings reports none):
            # charge the prompt estimate and one token per relayed content chunk.
            return Usage(estimate, observer.content_chunks if route.produces_output else 0)
        return Usage(0, 0)

    async def _proxy(
        self,
        exchange: Exchange,
        request: UpstreamRequest,
        observer: StreamObserver,
        ticket: Ticket | None,
    ) -> None:
        """Forward while watching for the client leaving (proxy/watched.py)."""
        await forward_watched(self.forwarder, self.leases, exchange, request, observer, ticket)


def _uncancel() -> None:
    """Take back the server's cancellation of this task: it has been handled."""
    current = asyncio.current_task()
    if current is not None:
        current.uncancel()
