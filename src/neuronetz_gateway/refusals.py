"""429s from the limiter's refusals (docs/REFERENCE.md §4.5, §4.6), per surface."""

from __future__ import annotations

from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.limits import Refused
from neuronetz_gateway.outcome import Outcome


def refused_error(refusal: Refused) -> GatewayError:
    """The 429 for a refusal: `insufficient_quota` for budgets, else `rate_limit_exceeded`."""
    # Retry-After as the limiter decided: absent when waiting will not help.
    headers = {name.lower(): value for name, value in refusal.headers.items()}
    if refusal.reason == "budget":
        return GatewayError(
            429,
            refusal.message,
            Outcome.BUDGET_EXCEEDED,
            code="insufficient_quota",
            type="insufficient_quota",
            headers=headers,
        )
    return GatewayError(
        429,
        refusal.message,
        Outcome.RATE_LIMITED,
        code="rate_limit_exceeded",
        type="requests",
        headers=headers,
    )
