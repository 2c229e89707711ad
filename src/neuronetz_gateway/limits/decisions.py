"""From an admission script's reply to what the client sees: headers and refusals.

The script reports facts (counts, waits, which checks failed); the policy of which
refusal to report and how to word it lives here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits.keys import Periods
from neuronetz_gateway.limits.layouts import Failure, WindowState
from neuronetz_gateway.limits.types import Refused, Scope

# A total budget never resets (an operator has to raise it): when refusals are compared
# its wait counts as a day; the client gets no Retry-After for it.
TOTAL_BUDGET_RETRY_MS = 86_400_000

# When two checks fail with the same wait, report the one that clears last.
_PRIORITY: dict[str, int] = {"rpm": 0, "tpm": 1, "concurrency": 2, "budget": 3}


@dataclass(frozen=True, slots=True)
class Subject:
    """A subject as the decision needs it: its scope and its limit values."""

    scope: Scope
    limits: LimitValues


def duration(ms: int) -> str:
    """A wait as OpenAI-style seconds: `0.25s`, `12s`."""
    seconds = f"{max(0, ms) / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{seconds}s"


def ratelimit_headers(states: Sequence[WindowState]) -> dict[str, str]:
    """`x-ratelimit-*` of REFERENCE.md §4.5 for the most constrained subject, where limits apply."""
    headers: dict[str, str] = {}
    requests = [state for state in states if state.rpm is not None]
    if requests:
        state = min(requests, key=lambda s: s.rpm_remaining)
        headers["x-ratelimit-limit-requests"] = str(state.rpm)
        headers["x-ratelimit-remaining-requests"] = str(state.rpm_remaining)
        headers["x-ratelimit-reset-requests"] = duration(state.rpm_reset_ms)
    tokens = [state for state in states if state.tpm is not None]
    if tokens:
        state = min(tokens, key=lambda s: s.tpm_remaining)
        headers["x-ratelimit-limit-tokens"] = str(state.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(state.tpm_remaining)
    return headers


def _wait_ms(failure: Failure, periods: Periods) -> int:
    if failure.reason != "budget" or not failure.exhausted or failure.period is None:
        return failure.wait_ms
    resets_at = periods.resets_at(failure.period)
    return TOTAL_BUDGET_RETRY_MS if resets_at is None else periods.ms_until(resets_at)


def refusal(
    failures: Sequence[Failure],
    states: Sequence[WindowState],
    subjects: Sequence[Subject],
    periods: Periods,
) -> Refused:
    """The refusal to report: the failed check that clears last."""
    failure = max(failures, key=lambda f: (_wait_ms(f, periods), _PRIORITY[f.reason]))
    retry_after = max(1, math.ceil(_wait_ms(failure, periods) / 1000))
    subject = subjects[failure.subject]
    resets_at = periods.resets_at(failure.period) if failure.period else None
    headers = ratelimit_headers(states)
    if not _never_clears(failure, resets_at):
        headers = {"Retry-After": str(retry_after), **headers}
    return Refused(
        reason=failure.reason,
        scope=subject.scope,
        retry_after=retry_after,
        headers=headers,
        message=_message(failure, subject, retry_after, periods),
        budget_period=failure.period,
        resets_at=resets_at if failure.reason == "budget" else None,
    )


def _never_clears(failure: Failure, resets_at: datetime | None) -> bool:
    """An exhausted total budget: no `Retry-After`, since waiting will not help
    (docs/REFERENCE.md §12); an operator has to raise it."""
    return failure.reason == "budget" and failure.exhausted and resets_at is None


def _message(failure: Failure, subject: Subject, retry_after: int, periods: Periods) -> str:
    of = f"of the {subject.scope}"
    limits = subject.limits
    if failure.reason == "rpm":
        return f"rate limit {of} reached: {limits.rpm} requests per minute; retry in {retry_after}s"
    if failure.reason == "tpm":
        return f"rate limit {of} reached: {limits.tpm} tokens per minute; retry in {retry_after}s"
    if failure.reason == "concurrency":
        return (
            f"concurrency limit {of} reached: {limits.max_concurrent} requests in flight; "
            f"retry in {retry_after}s"
        )
    period = failure.period or "total"
    if not failure.exhausted:
        return (
            f"{period} token budget {of} is fully reserved by requests in flight; "
            f"retry in {retry_after}s"
        )
    resets_at = periods.resets_at(period)
    if resets_at is None:
        return f"total token budget {of} exhausted; it does not reset"
    return f"{period} token budget {of} exhausted; resets at {resets_at:%Y-%m-%dT%H:%M:%SZ}"
