"""Relaying an upstream response to the client (docs/REFERENCE.md §4.7).

Streams go out as they arrive: every upstream read that completes at least one NDJSON
line or SSE frame is sent at once as one ASGI message (never merged with later data,
never held back for more); a trailing partial line waits only for its own end, since
an error line must be sanitised before it is relayed.
"""

from __future__ import annotations

import orjson

from neuronetz_gateway import respond
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.outcome import Outcome
from neuronetz_gateway.proxy.http_client import UpstreamResponse
from neuronetz_gateway.proxy.http_connection import UpstreamError
from neuronetz_gateway.proxy.observer import StreamObserver

NDJSON = b"application/x-ndjson"
EVENT_STREAM = b"text/event-stream"
STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
# Told in-band when the upstream broke off mid-stream.
LOST = GatewayError(502, "upstream connection lost", Outcome.UPSTREAM_ERROR, code="upstream_error")
# Recorded when the upstream itself reported an error in-band (relayed sanitised).
REPORTED = GatewayError(502, "upstream error", Outcome.UPSTREAM_ERROR, code="upstream_error")


async def relay_stream(
    exchange: Exchange,
    response: UpstreamResponse,
    observer: StreamObserver,
    *,
    sse: bool,
) -> None:
    """Relay an NDJSON (native) or SSE (OpenAI) stream, observing it on the way."""
    separator = b"\n\n" if sse else b"\n"
    feed = observer.sse if sse else observer.ndjson
    await respond.start(exchange, 200, EVENT_STREAM if sse else NDJSON, STREAM_HEADERS)
    pending = b""
    try:
        while chunk := await response.chunk():
            data = pending + chunk if pending else chunk
            cut = data.rfind(separator)
            if cut < 0:
                pending = data
                continue
            end = cut + len(separator)
            pending = data[end:]
            out = feed(data[:end])
            if out:
                await respond.body(exchange, out, more=True)
    except (UpstreamError, TimeoutError):
        await _lost(exchange, observer)
        return
    if pending.strip():
        out = feed(pending + separator)
        if out:
            await respond.body(exchange, out, more=True)
    if not observer.ended:  # cut off before its API's last event: the client is told
        await _lost(exchange, observer)
        return
    if observer.error:
        exchange.error = REPORTED
    await respond.body(exchange, b"", more=False)


async def _lost(exchange: Exchange, observer: StreamObserver) -> None:
    """The upstream broke off mid-stream: tell the client in-band, then end the stream."""
    observer.error = True
    await respond.fail(exchange, LOST)


async def relay_whole(
    exchange: Exchange,
    status: int,
    content: bytes,
    content_type: bytes,
    observer: StreamObserver,
    *,
    openai: bool,
) -> None:
    """Relay a complete (non-streamed) JSON response, recording its token counts."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    observer.whole(data, openai=openai)
    await respond.complete(exchange, status, content, content_type or respond.JSON)
