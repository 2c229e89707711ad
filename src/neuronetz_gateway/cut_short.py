"""Answering a request the server cut short (graceful shutdown ran out of time).

On SIGTERM the ASGI server stops accepting, waits up to `SHUTDOWN_GRACE_SECONDS` for
requests in flight, then cancels those still running. The pipeline settles and audits
such a request like a client disconnect (outcome `cancelled`); this module gives the
client a well-formed ending instead of a connection torn mid-stream: a 503 with
`Retry-After` if nothing was sent yet, else a final in-band error line (NDJSON) or
frame (SSE) and the end of the body. Best effort and bounded: the process is exiting.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from neuronetz_gateway import respond
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.db.tables import Outcome
from neuronetz_gateway.errors import Surface, error_body, unavailable

MESSAGE = "gateway is shutting down; retry the request"
ANSWER_TIMEOUT_SECONDS = 1.0


def _final_frame(surface: Surface) -> bytes:
    if surface is Surface.OPENAI:
        return b"data: " + error_body(surface, 503, MESSAGE, code="service_unavailable") + b"\n\n"
    return orjson.dumps({"error": MESSAGE}) + b"\n"


async def answer_cut_short(exchange: Exchange) -> None:
    """End the response of a request cancelled by the server; mark it `cancelled`."""
    with contextlib.suppress(Exception):  # the client may be gone, or too slow to read
        async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
            if not exchange.response_started:
                await respond.error(exchange, unavailable(MESSAGE, retry_after=1))
            elif not exchange.response_complete:
                await respond.body(exchange, _final_frame(exchange.surface), more=True)
                await respond.body(exchange, b"", more=False)
    exchange.outcome = Outcome.CANCELLED
    exchange.status = exchange.status or 503
