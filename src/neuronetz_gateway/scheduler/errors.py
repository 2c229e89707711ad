"""The answer to a request that found no slot in time (docs/REFERENCE.md §10)."""

from __future__ import annotations

from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.outcome import Outcome

SERVER_BUSY_MESSAGE = "server busy, retry shortly"


def server_busy() -> GatewayError:
    """503 `server_busy` with `Retry-After: 1`: the request waited `QUEUE_MAX_WAIT_SECONDS`
    for a slot, or every server with the model answered that its own queue is full.

    One second because the wait already happened: a client that retries joins the
    queue again at the current virtual time, so it loses nothing by waiting less.
    """
    return GatewayError(
        503,
        SERVER_BUSY_MESSAGE,
        Outcome.UNAVAILABLE,
        code="server_busy",
        headers={"retry-after": "1"},
    )
