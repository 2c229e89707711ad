"""Sending responses through an `Exchange` (pure ASGI, no framework on the hot path).

Every status line goes out through `start`, every body part through `body`: they record
the facts `outcome.decide` reads (status sent, response complete). An error reaches the
client through `error` (a whole response) or `fail` (also mid-stream, in-band), which
record it as the error the client was told about.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import GatewayError, render
from neuronetz_gateway.proxy import surfaces

JSON = b"application/json"
# A failure answered while the process winds down or after a fault: bounded, since the
# client may be gone or too slow to read.
FAIL_TIMEOUT_SECONDS = 1.0


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
    """`failure` as the whole response, in the exchange's surface shape."""
    exchange.error = failure
    headers = [(name.encode(), value.encode()) for name, value in failure.headers.items()]
    await complete(exchange, failure.status, render(failure, exchange.surface), headers=headers)


async def fail(exchange: Exchange, failure: GatewayError) -> None:
    """Tell the client about `failure`: as the response, or, once a stream has begun, as
    its final in-band error; then the response is complete. The first error told is
    the one recorded."""
    if not exchange.response_started:
        await error(exchange, failure)
        return
    if exchange.error is None:
        exchange.error = failure
    if not exchange.response_complete:
        frame = surfaces.in_band(exchange.route, exchange.surface, failure, exchange.request_id)
        await body(exchange, frame, more=True)
        await body(exchange, b"", more=False)


async def fail_quietly(exchange: Exchange, failure: GatewayError) -> None:
    """`fail`, best effort and bounded: for a request the gateway cannot finish (a fault,
    or shutdown). Never raises."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(FAIL_TIMEOUT_SECONDS):
            await fail(exchange, failure)
