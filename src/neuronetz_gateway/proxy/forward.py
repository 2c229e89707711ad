"""Forwarding one request upstream and relaying the answer (docs/REFERENCE.md §4.7).

`Forwarder.forward` sends an `UpstreamRequest` to a server that has the model
(`UpstreamPool.pick`). When no answer came back at all (the connection was refused, not
made within the connect timeout, or dropped before the status line) nothing has been
relayed, so it is tried once more on another server that has the model. A request
whose answer has begun is never retried.

Errors before the response starts become `GatewayError`s: an upstream 4xx keeps its
status with a sanitised message (404 becomes the gateway's own "model not found"),
5xx and redirects become 502, connection failures 502, timeouts 504, and no server in
rotation 503 with `Retry-After`. Errors after a stream started are relayed in-band by
`relay`. Every failure is reported to the pool, which ejects servers that are gone.

A request on a route that takes a slot (`UpstreamRequest.queue`) gets its server from
the scheduler (docs/SCHEDULING.md): it may wait for a slot, holds it for the attempt,
and gives it back before a retry takes one elsewhere. Ollama's own 503 before any byte
(its queue is full) is tried on another server with the model, else answered 503
`server_busy`; the server is not ejected: it answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import GatewayError, Surface, model_not_found
from neuronetz_gateway.outcome import Outcome
from neuronetz_gateway.policy.routes import Route
from neuronetz_gateway.proxy.headers import upstream_headers
from neuronetz_gateway.proxy.http_client import UpstreamClient, UpstreamResponse
from neuronetz_gateway.proxy.http_connection import (
    ConnectFailed,
    NoResponse,
    PoolExhausted,
    UpstreamError,
)
from neuronetz_gateway.proxy.observer import StreamObserver
from neuronetz_gateway.proxy.relay import relay_stream, relay_whole
from neuronetz_gateway.proxy.sanitize import sanitize_message
from neuronetz_gateway.proxy.upstreams import (
    CONNECT,
    STATUS,
    STREAM,
    TIMEOUT,
    Upstream,
    UpstreamPool,
)
from neuronetz_gateway.scheduler import Grant, SlotRequest, server_busy

log = structlog.get_logger(__name__)

MAX_ERROR_BODY_BYTES = 65536
# The first try and one retry on another server.
MAX_ATTEMPTS = 2


def upstream_failed(status: int = 502, message: str = "upstream error") -> GatewayError:
    return GatewayError(status, message, Outcome.UPSTREAM_ERROR, code="upstream_error")


def no_upstream(model: str | None, retry_after: int) -> GatewayError:
    """503: every server that could answer is out of rotation (docs/UPSTREAMS.md)."""
    if model is None:
        message = "upstream unavailable; retry shortly"
    else:
        shown = model if len(model) <= 128 else model[:128] + "…"
        message = f'model "{shown}" is temporarily unavailable; retry shortly'
    return GatewayError(
        503,
        message,
        Outcome.UPSTREAM_ERROR,
        code="upstream_unavailable",
        headers={"retry-after": str(max(1, retry_after))},
    )


class OllamaBusy(Exception):
    """Ollama answered 503 before any byte was relayed: its own queue is full."""


class NoAnswer(Exception):
    """Nothing came back from the upstream: the request may go to another server.

    `kind` is `CONNECT` (no connection) or `STREAM` (dropped before the status line)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What goes upstream: the route's fixed path with the client's method, the body
    to send, and the model with the servers that have it (none: any server)."""

    route: Route
    method: str
    body: bytes | None = None
    model: str | None = None
    holders: Collection[str] = ()
    # Set on routes that take a slot (docs/SCHEDULING.md): the scheduler, who waits and
    # until when, and the slot tried for beside the admission.
    slot: SlotRequest | None = None


class Forwarder:
    """Forwards requests over the process's pooled client to the servers of `pool`."""

    def __init__(self, client: UpstreamClient, pool: UpstreamPool) -> None:
        self._client = client
        self._pool = pool

    async def forward(
        self, exchange: Exchange, request: UpstreamRequest, observer: StreamObserver
    ) -> None:
        """Send `request` to a server among its holders and relay the answer."""
        pool = self._pool
        tried: list[Upstream] = []
        busy = False
        for _ in range(MAX_ATTEMPTS):
            grant = await self._place(exchange, request, tried)
            if grant is None:
                break
            upstream = grant.upstream
            tried.append(upstream)
            try:
                await self._attempt(exchange, upstream, request, observer)
            except NoAnswer as failure:
                log.info(
                    "upstream_no_answer",
                    upstream=upstream.label,
                    reason=failure.kind,
                    attempt=len(tried),
                )
                continue
            except OllamaBusy:
                busy = True
                log.info("upstream_busy", upstream=upstream.label, attempt=len(tried))
                continue
            finally:
                if request.slot is not None:
                    request.slot.scheduler.release(grant)
            return
        if busy:
            raise server_busy()
        if not tried:
            raise no_upstream(request.model, pool.retry_after(request.holders))
        raise upstream_failed(502, "upstream unavailable")

    async def _place(
        self, exchange: Exchange, request: UpstreamRequest, tried: list[Upstream]
    ) -> Grant | None:
        """The server for the next attempt: a slot from the scheduler when the request
        takes one (waiting for it if need be), else the pool's pick; None: no server."""
        slot = request.slot
        if slot is not None:
            now = asyncio.get_running_loop().time()
            # The first try went out beside the admission: its wait counts from then, the
            # moment the wait limit counts from too (a 503 past the limit shows >= it).
            started = slot.ticket.since if not tried else now
            prefetched = slot.prefetched if not tried else None
            trace = exchange.trace
            if trace is not None:  # a refusal leaves it open: ended as the request ended
                trace.begin("queue_wait")
            try:
                grant = await slot.scheduler.acquire(
                    request.holders, tried, slot.ticket, prefetched
                )
            finally:  # the wait of every attempt, granted or not (audit_log.queue_ms)
                waited = (asyncio.get_running_loop().time() - started) * 1000.0
                exchange.queue_ms = (exchange.queue_ms or 0.0) + waited
            if trace is not None:
                trace.end("queue_wait")
            return grant
        upstream = self._pool.pick(request.holders, exclude=tried)
        return None if upstream is None else Grant(upstream, "", None)

    async def _attempt(
        self,
        exchange: Exchange,
        upstream: Upstream,
        request: UpstreamRequest,
        observer: StreamObserver,
    ) -> None:
        """One exchange with `upstream`; `NoAnswer` when it sent nothing back."""
        pool = self._pool
        headers = upstream_headers(
            exchange.request_id, exchange.client_ip, has_body=request.body is not None
        )
        trace = exchange.trace
        if trace is not None:  # the upstream span; its context goes to Ollama
            trace.upstream_started(exchange, upstream.label, request.method, headers)
        started = time.perf_counter()
        exchange.upstream = upstream.label
        pool.begin(upstream)
        try:
            response = await self._send(upstream, request, headers)
            if trace is not None:
                trace.upstream_answered(response.status)
            async with response:
                try:
                    await _relay(exchange, response, request, observer)
                except BaseException as error:
                    # Closing (not releasing) the connection is what stops Ollama's generation.
                    response.close()
                    if isinstance(error, GatewayError) and _is_server_fault(response.status):
                        pool.failed(upstream, STATUS)
                    raise
            if observer.error:
                pool.failed(upstream, STREAM)
        except TimeoutError:
            pool.failed(upstream, TIMEOUT)
            if exchange.response_started:
                raise
            raise upstream_failed(504, "upstream timed out") from None
        except (UpstreamError, ValueError):
            pool.failed(upstream, STREAM)
            if exchange.response_started:
                raise
            raise upstream_failed(502, "upstream unavailable") from None
        finally:
            pool.end(upstream)
            exchange.upstream_ms = (time.perf_counter() - started) * 1000.0
            if trace is not None:
                trace.upstream_ended(exchange, stream_error=observer.error)

    async def _send(
        self, upstream: Upstream, request: UpstreamRequest, headers: dict[str, str]
    ) -> UpstreamResponse:
        """The upstream's response, its status line and headers read."""
        try:
            return await self._client.request(
                request.method,
                upstream.base_url,
                request.route.upstream_path,
                headers,
                request.body,
            )
        except ConnectFailed:
            self._pool.failed(upstream, CONNECT)
            raise NoAnswer(CONNECT) from None
        except PoolExhausted:
            # This process's own connection limit, not the server's fault: not ejected.
            raise server_busy() from None
        except NoResponse:
            # Dropped before the status line (a server going down mid-request).
            self._pool.failed(upstream, STREAM)
            raise NoAnswer(STREAM) from None


def _is_server_fault(status: int) -> bool:
    """Statuses the client cannot fix: redirects, server errors, and refusals of the
    gateway itself (e.g. Ollama's Host check). They become a generic 502."""
    return 300 <= status < 400 or status >= 500 or status in (401, 403, 407, 499)


async def _relay(
    exchange: Exchange,
    response: UpstreamResponse,
    request: UpstreamRequest,
    observer: StreamObserver,
) -> None:
    if response.status == 503 and request.model is not None:
        raise OllamaBusy  # before any byte: another server may take it (module docstring)
    if response.status >= 300:
        raise await _error_from(response, request.model)
    if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
        # Asked for identity: a compressed answer could be neither counted nor relayed.
        raise upstream_failed()
    content_type = response.headers.get("content-type", "")
    if "ndjson" in content_type:
        await relay_stream(exchange, response, observer, sse=False)
    elif "event-stream" in content_type:
        await relay_stream(exchange, response, observer, sse=True)
    else:
        content = await response.read()
        await relay_whole(
            exchange,
            response.status,
            content,
            content_type.encode("latin-1"),
            observer,
            openai=request.route.surface is Surface.OPENAI,
        )


async def _error_from(response: UpstreamResponse, model: str | None) -> GatewayError:
    status = response.status
    if _is_server_fault(status):
        return upstream_failed()
    if status == 404 and model is not None:
        return model_not_found(model)
    raw = await response.read_prefix(MAX_ERROR_BODY_BYTES)
    return GatewayError(
        status,
        sanitize_message(_error_text(raw), fallback="upstream rejected the request"),
        Outcome.CLIENT_ERROR,
        code="invalid_request",
    )


def _error_text(raw: bytes) -> Any:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return error.get("message")
    return error
