"""Forwarding with the client watched (docs/ARCHITECTURE.md).

While a request is forwarded and relayed, a watcher task waits for the client's
`http.disconnect`: a client that leaves before the response is complete cancels the
upstream exchange at once (closing the connection to Ollama is what stops its
generation). Meanwhile the request's concurrency lease, if it holds one, is kept
alive by the process's `LeaseKeeper`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.limits import Ticket
from neuronetz_gateway.limits.lease_keeper import LeaseKeeper
from neuronetz_gateway.proxy.forward import Forwarder, UpstreamRequest
from neuronetz_gateway.proxy.observer import StreamObserver


async def forward_watched(
    forwarder: Forwarder,
    leases: LeaseKeeper,
    exchange: Exchange,
    request: UpstreamRequest,
    observer: StreamObserver,
    ticket: Ticket | None,
) -> None:
    """`forwarder.forward`, cancelled when the client disconnects (then it returns
    normally, with `exchange.disconnected` set)."""
    main = asyncio.current_task()
    if main is None:  # pragma: no cover - handlers always run in a task
        raise RuntimeError("no current task")
    watcher = asyncio.create_task(_watch(exchange, main, ticket, leases))
    try:
        await forwarder.forward(exchange, request, observer)
    except asyncio.CancelledError:
        if not exchange.disconnected:
            raise
        main.uncancel()
    finally:
        watcher.cancel()


async def _watch(
    exchange: Exchange, main: asyncio.Task[Any], ticket: Ticket | None, leases: LeaseKeeper
) -> None:
    """Cancel `main` when the client disconnects; keep a lease alive meanwhile."""
    lease = ticket if ticket is not None and ticket.holds_lease else None
    if lease is not None:
        leases.keep(lease)
    try:
        while True:
            message = await exchange.receive()
            if message["type"] == "http.disconnect":
                if not exchange.response_complete:
                    exchange.disconnected = True
                    main.cancel()
                return
    finally:
        if lease is not None:
            leases.drop(lease)
