"""The application factory: a FastAPI app wrapped in the gateway's pure-ASGI middleware.

`create_app(settings)` builds the app; its lifespan opens the process's resources
(Postgres engine, Redis client, upstream session) and runtime on an `AsyncExitStack`,
and closes them, in reverse order, on shutdown or when opening fails half-way.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from neuronetz_gateway import backends
from neuronetz_gateway.api import health, metrics
from neuronetz_gateway.api.health import Readiness
from neuronetz_gateway.config import Settings, load_settings
from neuronetz_gateway.errors import error_body, surface_of_path
from neuronetz_gateway.gateway import GatewayMiddleware, RuntimeHolder
from neuronetz_gateway.middleware.error_guard import ErrorGuardMiddleware, internal_error_body
from neuronetz_gateway.middleware.request_id import RequestIdMiddleware
from neuronetz_gateway.observability import multiprocess
from neuronetz_gateway.observability.logging import configure_logging
from neuronetz_gateway.observability.tracing_env import tracing_enabled
from neuronetz_gateway.pipeline import Pipeline
from neuronetz_gateway.process_memory import return_large_allocations
from neuronetz_gateway.resources import open_resources
from neuronetz_gateway.runtime import GatewayRuntime
from neuronetz_gateway.server.limits import TransportLimits

log = structlog.get_logger("neuronetz_gateway.app")

_STATUS_MESSAGES = {404: "not found", 405: "method not allowed"}
JSON = "application/json"


async def _http_error(request: Request, exc: Exception) -> Response:
    """404/405/400 from the framework's router, in the surface's error shape."""
    status = 400
    headers: dict[str, str] | None = None
    if isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        allow = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow")
        if status == 405 and allow:
            headers = {"allow": allow}
    message = _STATUS_MESSAGES.get(status, "bad request")
    body = error_body(surface_of_path(request.url.path), status, message)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def _internal_error(request: Request, exc: Exception) -> Response:
    """What the framework's last-resort handler answers: the gateway's generic 500."""
    return Response(internal_error_body(request.scope), status_code=500, media_type=JSON)


class GatewayApp:
    """The ASGI application: request id → error guard → route policy, then the pipeline
    (allowlisted routes) or the framework (/healthz, /readyz, /metrics; the lifespan).

    The hot path never enters the framework's own middleware stack: its per-request
    layers (error telemetry reading the environment, body-limit wrapping) cost ~8 % of
    the CPU of a proxied request (docs/PERFORMANCE.md) and serve nothing the pipeline
    needs.

    `transport_limits` is read by the HTTP protocol (server/protocol.py) for every
    connection it serves this app on.
    """

    def __init__(
        self, framework: FastAPI, holder: RuntimeHolder, transport_limits: TransportLimits
    ) -> None:
        self.framework = framework
        self.holder = holder
        self.transport_limits = transport_limits
        self._http = RequestIdMiddleware(ErrorGuardMiddleware(GatewayMiddleware(framework, holder)))

    @property
    def state(self) -> State:
        return self.framework.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.framework(scope, receive, send)


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    Imported code and start-up state (~135,000 objects: FastAPI, SQLAlchemy, aiohttp,
    pydantic, ...) live as long as the process, yet every full collection walks them
    again: ~65 ms of stopped event loop on this machine, which surfaced as the p99 of
    stream start-ups under load (docs/PERFORMANCE.md). `gc.freeze()` keeps them out of
    every later collection; request garbage is collected as before.
    """
    gc.collect()
    gc.freeze()


def create_app(settings: Settings) -> GatewayApp:
    """The gateway as an ASGI app for `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await _open(stack, app.state)
            yield
        log.info("gateway_stopped")

    async def _open(stack: AsyncExitStack, state: State) -> None:
        """Open everything one process serves with, each close pushed on `stack` as soon
        as its thing is open: a failure half-way closes exactly what was opened, in
        reverse order, and so does shutdown."""
        return_large_allocations()  # before the first Argon2 hash (the decoy)
        multiprocess.reap_dead_workers(settings)
        stack.callback(multiprocess.retire_this_worker, settings)
        resources = await open_resources(settings)
        stack.push_async_callback(resources.aclose)
        state.resources = resources
        state.readiness = Readiness(resources)
        runtime = GatewayRuntime(settings, resources)
        stack.push_async_callback(runtime.aclose)  # closes only what `start` started
        state.metrics_sampler = runtime.sampler
        await runtime.start()
        if tracing_enabled(os.environ):
            # Imported here: with tracing off no OpenTelemetry module is ever loaded.
            from neuronetz_gateway.observability.tracing import Tracing

            runtime.tracing = Tracing(settings.trusted_proxy_ips)
            # Closed after the drain (pushed before it): the cancelled requests' spans
            # are exported too.
            stack.push_async_callback(runtime.tracing.aclose)
            log.info("tracing_enabled")
        pipeline = Pipeline(runtime)
        stack.callback(pipeline.leases.close)  # after the drain: leases held to the end
        # At shutdown: no new requests into the pipeline, then the ones in it finish.
        stack.push_async_callback(runtime.drain)
        holder.runtime, holder.pipeline = runtime, pipeline
        stack.callback(holder.clear)
        freeze_startup_heap()
        log.info(
            "gateway_started", upstreams=len(settings.upstream_urls), **backends.describe(settings)
        )
        if settings.standalone:
            log.warning(
                "standalone_mode",
                detail="one process, one replica: limits and caches live in this process",
                **backends.describe(settings),
            )
        elif settings.metrics_token is None:
            log.warning(
                "metrics_without_token",
                detail="/metrics answers loopback clients only; set METRICS_TOKEN to scrape "
                "it from elsewhere",
            )

    holder = RuntimeHolder(trusted_proxies=list(settings.trusted_proxy_ips))
    app = FastAPI(
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry layer stays off: the gateway's endpoints (/healthz,
        # /readyz, /metrics) are not traced, and the pipeline's traces are the gateway's
        # own (observability/tracing.py), whatever FASTAPI_OTEL_AUTO_CONFIGURE says.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    return GatewayApp(app, holder, TransportLimits.from_settings(settings))


def create_app_from_env() -> GatewayApp:
    """Factory for the ASGI server: settings from the environment, logging configured."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
