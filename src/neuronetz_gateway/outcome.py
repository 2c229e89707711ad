"""How a request ended: decided once, from the facts the stages recorded.

Stages never write a verdict. They record what happened on the `Exchange` (the status
sent, whether the response was completed, the client left, the server cut the request
short, the error the client was told about, an internal failure), and `decide` turns
those facts into the audited outcome and status when the request is recorded. The
precedence between facts lives here and nowhere else.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from neuronetz_gateway.context import Exchange

# nginx's "client closed request": audited when a client left before any status was sent.
CANCELLED_STATUS = 499
INTERNAL_ERROR_STATUS = 500


class Outcome(enum.StrEnum):
    """`request_outcome` (docs/REFERENCE.md §3.1): how a request ended, as audited."""

    OK = "ok"
    CLIENT_ERROR = "client_error"
    AUTH_FAILED = "auth_failed"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    BUDGET_EXCEEDED = "budget_exceeded"
    UPSTREAM_ERROR = "upstream_error"
    CANCELLED = "cancelled"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"


class Ending(NamedTuple):
    """The audited outcome of a request and its audited status code."""

    outcome: Outcome
    status: int


def decide(exchange: Exchange) -> Ending:
    """The ending of a finished exchange, from its facts.

    The status is the one the client was sent; where none was sent it is 499 (the
    client left) or 500 (the gateway failed). An internal failure outranks everything,
    so a fault is never hidden behind `ok` or `cancelled`; a request the client left
    (or the server cut short) before its response was complete is `cancelled`; else
    the error the client was told about, if any, decides.
    """
    status = exchange.status
    if exchange.internal_error:
        return Ending(Outcome.INTERNAL_ERROR, status or INTERNAL_ERROR_STATUS)
    if exchange.cut_short or (exchange.disconnected and not exchange.response_complete):
        return Ending(Outcome.CANCELLED, status or CANCELLED_STATUS)
    if exchange.error is not None:
        return Ending(exchange.error.outcome, status or exchange.error.status)
    if not status:  # no stage answered: a fault, whatever it was
        return Ending(Outcome.INTERNAL_ERROR, INTERNAL_ERROR_STATUS)
    return Ending(Outcome.OK, status)
