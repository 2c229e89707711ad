"""Forwarding one request upstream and relaying the answer (SPEC §4.7).

Errors before the response starts become `GatewayError`s: an upstream 4xx keeps its
status with a sanitised message (404 becomes the gateway's own "model not found"),
5xx and redirects become 502, connection failures 502, timeouts 504. Errors after a
stream started are relayed in-band by `relay`.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.db.tables import Outcome
from neuronetz_gateway.errors import GatewayError, model_not_found
from neuronetz_gateway.proxy.headers import upstream_headers
from neuronetz_gateway.proxy.observer import StreamObserver
from neuronetz_gateway.proxy.relay import relay_stream, relay_whole
from neuronetz_gateway.proxy.sanitize import sanitize_message
from neuronetz_gateway.proxy.upstreams import Upstream

MAX_ERROR_BODY_BYTES = 65536


def upstream_failed(status: int = 502, message: str = "upstream error") -> GatewayError:
    return GatewayError(status, message, Outcome.UPSTREAM_ERROR, code="upstream_error")


class UpstreamUnreachable(Exception):
    """Nothing was sent: the connection to the upstream could not be made."""


async def forward(
    exchange: Exchange,
    session: aiohttp.ClientSession,
    upstream: Upstream,
    *,
    method: str,
    path: str,
    body: bytes | None,
    observer: StreamObserver,
    model: str | None = None,
) -> None:
    """Send the request to `upstream` and relay its answer to the client."""
    headers = upstream_headers(exchange.request_id, exchange.client_ip, has_body=body is not None)
    started = time.perf_counter()
    upstream.in_flight += 1
    try:
        async with session.request(
            method, upstream.url(path), data=body, headers=headers, allow_redirects=False
        ) as response:
            try:
                await _relay(exchange, response, observer, model)
            except BaseException:
                # Closing (not releasing) the connection is what stops Ollama's generation.
                response.close()
                raise
    except aiohttp.ClientConnectorError:
        raise UpstreamUnreachable from None
    except TimeoutError:
        if exchange.response_started:
            raise
        raise upstream_failed(504, "upstream timed out") from None
    except (aiohttp.ClientError, ValueError):
        if exchange.response_started:
            raise
        raise upstream_failed(502, "upstream unavailable") from None
    finally:
        upstream.in_flight -= 1
        exchange.upstream_ms = (time.perf_counter() - started) * 1000.0
        exchange.upstream = upstream.label


async def _relay(
    exchange: Exchange,
    response: aiohttp.ClientResponse,
    observer: StreamObserver,
    model: str | None,
) -> None:
    if response.status >= 300:
        raise await _error_from(response, model)
    content_type = response.headers.get("Content-Type", "")
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
            openai=exchange.route is not None and exchange.route.name.startswith("/v1/"),
        )


async def _error_from(response: aiohttp.ClientResponse, model: str | None) -> GatewayError:
    status = response.status
    if status < 400 or status >= 500 or status in (401, 403, 407, 499):
        # Redirects, server errors and refusals of the gateway itself (e.g. Ollama's
        # Host check) are the operator's problem, not the client's: 502.
        return upstream_failed()
    if status == 404 and model is not None:
        return model_not_found(model)
    raw = await response.content.read(MAX_ERROR_BODY_BYTES)
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
