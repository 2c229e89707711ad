"""Reading the request body (docs/REFERENCE.md §4.4, §11): size-checked, uncompressed."""

from __future__ import annotations

import asyncio
import contextlib

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import GatewayError, bad_request
from neuronetz_gateway.outcome import Outcome

DRAIN_SECONDS = 2.0


class ClientGone(Exception):
    """The client disconnected before its request was complete."""


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"request body too large (limit {limit} bytes)",
        Outcome.CLIENT_ERROR,
        code="request_too_large",
        # The rest of an oversized body is never read: the connection cannot be reused.
        headers={"connection": "close"},
    )


def declared_length(exchange: Exchange) -> int | None:
    """The request's Content-Length, or None when absent; 400 when it is malformed."""
    value = exchange.header(b"content-length")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise bad_request("invalid Content-Length")
    return int(value)


async def read_body(exchange: Exchange, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as more than `limit` bytes arrive, and
    with 415 once read when it is compressed."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await exchange.receive()
        if message["type"] == "http.disconnect":
            exchange.disconnected = True
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _discard_rest(exchange, allowance=limit)
            raise too_large(limit)
        if chunk:
            parts.append(chunk)
        if not message.get("more_body", False):
            refuse_encoded(exchange)
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _discard_rest(exchange: Exchange, allowance: int) -> None:
    """Read and drop what the client is still sending, within bounds, before the 413.

    Closing a socket with unread data makes the kernel send a reset, which can destroy
    the 413 before the client reads it (the reason nginx lingers on close). Up to
    `allowance` more bytes or DRAIN_SECONDS are spent; after that the connection is
    closed regardless.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            drained = 0
            while drained <= allowance:
                message = await exchange.receive()
                if message["type"] == "http.disconnect":
                    exchange.disconnected = True
                    return
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def refuse_encoded(exchange: Exchange) -> None:
    """415 for a body sent with a Content-Encoding other than identity.

    The gateway must read what Ollama will read, so it takes bodies only as sent.
    """
    for name, value in exchange.scope["headers"]:
        if name == b"content-encoding":
            codings = {c.strip().lower() for c in bytes(value).split(b",")} - {b"", b"identity"}
            if codings:
                shown = b", ".join(sorted(codings)).decode("latin-1")[:40]
                raise GatewayError(
                    415,
                    f"request bodies must be sent uncompressed (Content-Encoding: {shown})",
                    Outcome.CLIENT_ERROR,
                    code="unsupported_content_encoding",
                )
