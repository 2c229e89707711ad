"""The request pipeline: every allowlisted request, stage by stage (ARCHITECTURE.md).

    route policy (gateway.py) → authenticate → read body → authorize model
        → admit → proxy + relay → settle → audit

`Pipeline.handle` is the whole story for one request; each stage lives in its own
module and refuses by raising `GatewayError`, which is answered here in the shape of
the surface. Whatever happens, the request is settled (if admitted) and audited.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import structlog

from neuronetz_gateway import respond
from neuronetz_gateway.api import listings
from neuronetz_gateway.auth.credentials import API_KEY, AUTHORIZATION, presented_key
from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.catalog.models import CatalogModel
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.cut_short import answer_cut_short
from neuronetz_gateway.db.tables import Outcome
from neuronetz_gateway.errors import GatewayError, model_not_found, unavailable
from neuronetz_gateway.limits import (
    Admission,
    AdmissionRequest,
    LimiterUnavailable,
    Refused,
    Ticket,
    estimate_prompt_tokens,
)
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.access import may_use, visible_models
from neuronetz_gateway.policy.routes import Route, RouteKind
from neuronetz_gateway.proxy import body as bodies
from neuronetz_gateway.proxy import rewrite, surfaces
from neuronetz_gateway.proxy.forward import forward, upstream_failed
from neuronetz_gateway.proxy.observer import StreamObserver
from neuronetz_gateway.proxy.ps import loaded_models
from neuronetz_gateway.proxy.reading import ModelRequest, read_request
from neuronetz_gateway.proxy.usage import Usage
from neuronetz_gateway.refusals import refused_error
from neuronetz_gateway.runtime import GatewayRuntime

log = structlog.get_logger(__name__)

CANCELLED_STATUS = 499  # nginx's "client closed request", for the audit row only


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

    async def handle(self, exchange: Exchange, route: Route, model_param: str | None) -> None:
        """Run one allowlisted request through every stage; never raises."""
        self.runtime.request_started()
        try:
            await self._stages(exchange, route, model_param)
        except GatewayError as failure:
            if exchange.response_started:
                exchange.outcome = failure.outcome
            else:
                await respond.error(exchange, failure)
        except bodies.ClientGone:
            exchange.outcome = Outcome.CANCELLED
        except asyncio.CancelledError:
            # The server ended its shutdown grace period (a client leaving is handled
            # where it happens). The stages have settled; the request ends here,
            # answered and audited, since nobody awaits this task.
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            if not exchange.disconnected:
                await answer_cut_short(exchange)
            exchange.outcome = Outcome.CANCELLED
        finally:
            if exchange.disconnected and not exchange.response_complete:
                exchange.outcome = Outcome.CANCELLED
                exchange.status = exchange.status or CANCELLED_STATUS
            try:
                self.runtime.record(exchange)
            finally:
                self.runtime.request_finished()

    async def _stages(self, exchange: Exchange, route: Route, model_param: str | None) -> None:
        declared = bodies.declared_length(exchange)
        if declared is not None and declared > self.settings.max_request_body_bytes:
            raise bodies.too_large(self.settings.max_request_body_bytes)
        key = presented_key(exchange.header(AUTHORIZATION), exchange.header(API_KEY))
        principal = await self.runtime.authenticator.authenticate(key)
        exchange.principal = principal
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

    # -- model access ---------------------------------------------------------------

    def _authorize(self, exchange: Exchange, principal: Principal, requested: str) -> CatalogModel:
        """The catalog entry of `requested` if the key may use it; 404 otherwise."""
        catalog = self.runtime.catalog
        model = catalog.get(requested)
        if model is None or not may_use(principal, model.name, catalog):
            raise model_not_found(requested)
        exchange.model = model.name
        return model

    async def _read_request(self, exchange: Exchange, route: Route) -> ModelRequest:
        raw = await bodies.read_body(exchange, self.settings.max_request_body_bytes)
        return read_request(raw, route, self.settings.max_json_depth)

    # -- routes ---------------------------------------------------------------------

    async def _model_request(self, exchange: Exchange, route: Route, principal: Principal) -> None:
        parsed = await self._read_request(exchange, route)
        model = self._authorize(exchange, principal, parsed.model)
        estimate = estimate_prompt_tokens(parsed.prompt_text_bytes())
        surfaces.check_output_cap(route, parsed.client_cap)
        admission = await self._admit(exchange, route, principal, estimate, parsed.client_cap)
        exchange.extra_headers.extend(
            (name.encode(), value.encode()) for name, value in admission.headers.items()
        )
        if route.produces_output:
            exchange.extra_headers += output_cap_header(admission.output_cap, parsed.client_cap)
        if principal.prompt_logging:
            # The body as the client sent it, before the rewrites below change it.
            exchange.prompt_request = orjson.loads(parsed.raw)
        output_cap = admission.output_cap if route.produces_output else None
        forwarded = rewrite.prepare(parsed, output_cap, self.settings)
        exchange.extra_headers.extend(forwarded.headers)
        observer = surfaces.observer_for(
            route, collect_text=principal.prompt_logging, keep_usage_chunk=forwarded.wants_usage
        )
        try:
            await self._proxy_watching(
                exchange, route, forwarded.body, observer, model, admission.ticket
            )
        finally:
            usage = self._usage(observer, estimate, exchange, route)
            exchange.prompt_tokens = usage.prompt_tokens
            exchange.completion_tokens = usage.completion_tokens
            if principal.prompt_logging:
                exchange.response_text = observer.text
            await self._settle(admission.ticket, usage)

    async def _show(self, exchange: Exchange, route: Route, principal: Principal) -> None:
        parsed = await self._read_request(exchange, route)
        model = self._authorize(exchange, principal, parsed.model)
        await self._count_request(exchange, route, principal)
        await self._proxy_watching(exchange, route, parsed.raw, StreamObserver(), model, None)

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
        await self._proxy_watching(exchange, route, None, StreamObserver(), None, None)

    # -- admission and settlement -----------------------------------------------------

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
        try:
            return await self.runtime.limiter.admit(request)
        except Refused as refusal:
            raise refused_error(refusal) from None
        except LimiterUnavailable:
            raise unavailable("rate limiting is temporarily unavailable") from None

    async def _count_request(self, exchange: Exchange, route: Route, principal: Principal) -> None:
        """Count a request that asks Ollama but runs no model (`/api/show`, `/api/ps`)
        against `rpm`: no tokens, no concurrency slot, so nothing to settle."""
        admission = await self._admit(exchange, route, principal.requests_only(), 0, None)
        exchange.extra_headers.extend(
            (name.encode(), value.encode()) for name, value in admission.headers.items()
        )

    async def _settle(self, ticket: Ticket, usage: Usage) -> None:
        if ticket.is_noop:
            return  # nothing was counted: no task, no round trip
        # Shielded: a cancelled request (client gone) must still release its lease.
        settle = self.runtime.limiter.settle(ticket, usage.prompt_tokens, usage.completion_tokens)
        try:
            await asyncio.shield(settle)
        except (LimiterUnavailable, asyncio.CancelledError) as error:
            log.warning("settlement_failed", error=type(error).__name__)

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

    # -- proxying with the client watched ---------------------------------------------

    async def _proxy_watching(
        self,
        exchange: Exchange,
        route: Route,
        body: bytes | None,
        observer: StreamObserver,
        model: CatalogModel | None,
        ticket: Ticket | None,
    ) -> None:
        """Forward while watching for the client leaving (which cancels the upstream)."""
        main = asyncio.current_task()
        if main is None:  # pragma: no cover - handlers always run in a task
            raise RuntimeError("no current task")
        watcher = asyncio.create_task(self._watch(exchange, main, ticket))
        try:
            await self._forward(exchange, route, body, observer, model)
        except asyncio.CancelledError:
            if not exchange.disconnected:
                raise
            main.uncancel()
            exchange.outcome = Outcome.CANCELLED
        finally:
            watcher.cancel()

    async def _forward(
        self,
        exchange: Exchange,
        route: Route,
        body: bytes | None,
        observer: StreamObserver,
        model: CatalogModel | None,
    ) -> None:
        await forward(
            exchange,
            self.runtime.resources.upstream,
            self.runtime.upstreams,
            method=exchange.method,
            path=route.upstream_path,
            body=body,
            observer=observer,
            model=model.name if model is not None else None,
            holders=model.upstreams if model is not None else (),
        )

    async def _watch(
        self, exchange: Exchange, main: asyncio.Task[Any], ticket: Ticket | None
    ) -> None:
        """Cancel `main` when the client disconnects; keep a stream's lease alive."""
        lease = ticket if ticket is not None and ticket.holds_lease else None
        interval = lease.refresh_interval if lease is not None else None
        while True:
            try:
                async with asyncio.timeout(interval):
                    message = await exchange.receive()
            except TimeoutError:
                if lease is not None:
                    with contextlib.suppress(LimiterUnavailable):
                        await self.runtime.limiter.refresh(lease)
                continue
            if message["type"] == "http.disconnect":
                if not exchange.response_complete:
                    exchange.disconnected = True
                    main.cancel()
                return
