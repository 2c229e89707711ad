"""Sending responses through an `Exchange` (pure ASGI, no framework on the hot path)."""

from __future__ import annotations

import time

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import GatewayError, render

JSON = b"application/json"


async def start(
    exchange: Exchange,
    status: int,
    content_type: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send the status line and headers (once)."""
    all_headers = [(b"content-type", content_type), *exchange.extra_headers]
    if headers:
        all_headers.extend(headers)
    exchange.status = status
    exchange.response_started = True
    exchange.first_byte_ms = (time.perf_counter() - exchange.started) * 1000.0
    await exchange.send({"type": "http.response.start", "status": status, "headers": all_headers})


async def body(exchange: Exchange, data: bytes, *, more: bool) -> None:
    if not more:
        # Set before sending: the disconnect watcher must not mistake the end of a
        # completed response for a client that went away.
        exchange.response_complete = True
    await exchange.send({"type": "http.response.body", "body": data, "more_body": more})


async def complete(
    exchange: Exchange,
    status: int,
    data: bytes,
    content_type: bytes = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A whole response with a known length."""
    length = [(b"content-length", str(len(data)).encode())]
    await start(exchange, status, content_type, [*length, *(headers or ())])
    await body(exchange, b"" if exchange.method == "HEAD" else data, more=False)


async def error(exchange: Exchange, failure: GatewayError) -> None:
    """`failure` in the exchange's surface shape; records status and outcome."""
    exchange.outcome = failure.outcome
    headers = [(name.encode(), value.encode()) for name, value in failure.headers.items()]
    await complete(exchange, failure.status, render(failure, exchange.surface), headers=headers)
