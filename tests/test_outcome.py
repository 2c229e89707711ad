"""`decide`: the audited outcome and status of a request, from the facts its stages recorded."""

from __future__ import annotations

from typing import Any

import pytest

from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import Surface, bad_request, model_not_found, shutting_down
from neuronetz_gateway.outcome import Ending, Outcome, decide
from neuronetz_gateway.proxy.relay import LOST


def exchange(**facts: Any) -> Exchange:
    done = Exchange(
        scope={"headers": []},
        receive=None,  # type: ignore[arg-type]  # never called: the request is over
        send=None,  # type: ignore[arg-type]  # never called: the request is over
        request_id="r-1",
        method="POST",
        surface=Surface.NATIVE,
        audit_route="/api/chat",
        client_ip=None,
        user_agent=None,
    )
    for name, value in facts.items():
        setattr(done, name, value)
    return done


@pytest.mark.parametrize(
    ("facts", "ending"),
    [
        # Served.
        ({"status": 200, "response_complete": True}, Ending(Outcome.OK, 200)),
        # Refused, or an upstream error passed on: the error told decides.
        (
            {"status": 404, "response_complete": True, "error": model_not_found("x")},
            Ending(Outcome.NOT_FOUND, 404),
        ),
        # The upstream broke off mid-stream: told in-band, status as sent.
        (
            {"status": 200, "response_complete": True, "error": LOST},
            Ending(Outcome.UPSTREAM_ERROR, 200),
        ),
        # The client left: before any byte (499), mid-stream (status as sent).
        ({"disconnected": True}, Ending(Outcome.CANCELLED, 499)),
        ({"status": 200, "disconnected": True}, Ending(Outcome.CANCELLED, 200)),
        # ... but a client leaving after the whole response changes nothing.
        (
            {"status": 200, "response_complete": True, "disconnected": True},
            Ending(Outcome.OK, 200),
        ),
        # Cut short at shutdown: answered 503 (or ended in-band), still `cancelled`.
        (
            {
                "status": 503,
                "response_complete": True,
                "cut_short": True,
                "error": shutting_down(),
            },
            Ending(Outcome.CANCELLED, 503),
        ),
        # An internal failure outranks everything, whatever was sent.
        (
            {"status": 500, "response_complete": True, "internal_error": True},
            Ending(Outcome.INTERNAL_ERROR, 500),
        ),
        (
            {"status": 200, "response_complete": True, "internal_error": True},
            Ending(Outcome.INTERNAL_ERROR, 200),
        ),
        ({"internal_error": True, "disconnected": True}, Ending(Outcome.INTERNAL_ERROR, 500)),
        (
            {"status": 400, "internal_error": True, "error": bad_request("x")},
            Ending(Outcome.INTERNAL_ERROR, 400),
        ),
        # Nothing answered and nothing known: never `ok` with status 0.
        ({}, Ending(Outcome.INTERNAL_ERROR, 500)),
    ],
)
def test_the_ending_follows_from_the_facts(facts: dict[str, Any], ending: Ending) -> None:
    assert decide(exchange(**facts)) == ending
