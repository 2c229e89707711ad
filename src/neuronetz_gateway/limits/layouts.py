"""The limiter scripts' arguments and replies, declared once (limits/lua/ reads them).

Every position in `ARGV` and in the replies of admit.lua, settle.lua and refresh.lua is
defined here and nowhere else: the `*Args` classes write `ARGV`, the `*Reply` classes
read replies (as either script host gives them: `int`, `bytes`, `None`, lists). `KEYS`
hold each subject's seven keys in `SubjectKeys` order (limits/keys.py). A change of
layout is a change here and in the Lua that reads it.

Conventions: numbers travel as decimal text; '' means absent (not limited, not
rebuilt, the store's own clock); the subjects are the key, then the tenant (numbered
from 1 in Lua, from 0 here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from neuronetz_gateway.limits.keys import PERIODS
from neuronetz_gateway.limits.types import BudgetPeriod, RefusalReason, SubjectPlan
from neuronetz_gateway.scripting import Reply


def text(value: object) -> str:
    """A reply item as text (Redis gives bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: object) -> int:
    if type(value) is int:  # what both hosts send for integers: no conversion
        return value
    return int(cast(int, value))


def _items(value: Reply) -> list[Reply]:
    if not isinstance(value, list):
        raise ValueError(f"expected an array in the limiter's reply, got {type(value).__name__}")
    return value


def _optional(value: int | None) -> str:
    return "" if value is None else str(value)


def clock_arg(now: float | None) -> str:
    """A script's `now`: epoch ms, or '' for the store's own clock (Redis `TIME`)."""
    return "" if now is None else str(int(now * 1000))


# -- admit.lua ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AdmitSubject:
    """One subject's nine values in admit.lua's ARGV: its limits (None = not limited),
    then for each budget counter being rebuilt its initial "used|gen" (None = not)."""

    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    budgets: tuple[int | None, int | None, int | None]  # daily, monthly, total
    rebuilt: tuple[str | None, str | None, str | None] = (None, None, None)
    argv: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Encoded once: a subject's limits repeat for every request of a key.
        argv = (
            _optional(self.rpm),
            _optional(self.tpm),
            _optional(self.max_concurrent),
            *(_optional(limit) for limit in self.budgets),
            *("" if value is None else value for value in self.rebuilt),
        )
        object.__setattr__(self, "argv", argv)


@dataclass(frozen=True, slots=True)
class AdmitArgs:
    """admit.lua's ARGV: the request, then nine values per subject (`AdmitSubject`)."""

    now: str  # clock_arg()
    admission_id: str
    lease_ms: int
    prompt_estimate: int
    output_ceiling: int  # min(client cap, default max); -1: the request has no output
    counter_ttls_ms: tuple[str, str, str]  # daily, monthly, total counters
    state_ttl_ms: int  # the live and resv structures
    subjects: tuple[AdmitSubject, ...]

    def argv(self) -> list[str]:
        argv = [
            self.now,
            self.admission_id,
            str(self.lease_ms),
            str(self.prompt_estimate),
            str(self.output_ceiling),
            *self.counter_ttls_ms,
            str(self.state_ttl_ms),
            str(len(self.subjects)),
        ]
        for subject in self.subjects:
            argv += subject.argv
        return argv


@dataclass(frozen=True, slots=True)
class WindowState:
    """One subject's rate-limit state as admit.lua reports it (None = not limited):
    the array {rpm, rpm remaining, rpm reset ms, tpm, tpm remaining}, -1 = none."""

    rpm: int | None
    rpm_remaining: int
    rpm_reset_ms: int
    tpm: int | None
    tpm_remaining: int

    @classmethod
    def parse(cls, raw: Reply) -> WindowState:
        rpm, remaining, reset, tpm, tpm_remaining = map(_int, _items(raw))
        return cls(
            rpm=rpm if rpm >= 0 else None,
            rpm_remaining=remaining,
            rpm_reset_ms=reset,
            tpm=tpm if tpm >= 0 else None,
            tpm_remaining=tpm_remaining,
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed check: the array {reason, subject, wait ms, period 1..3 (0 = none),
    detail ('exhausted' | 'reserved' | '')}."""

    reason: RefusalReason
    subject: int  # index into the subjects, 0-based
    wait_ms: int
    period: BudgetPeriod | None
    exhausted: bool  # budgets: settled usage (not reservations) leaves no room

    @classmethod
    def parse(cls, raw: Reply) -> Failure:
        reason, subject, wait, period, detail = _items(raw)
        period_index = _int(period)
        return cls(
            reason=cast(RefusalReason, text(reason)),
            subject=_int(subject) - 1,
            wait_ms=_int(wait),
            period=PERIODS[period_index - 1] if period_index else None,
            exhausted=text(detail) == "exhausted",
        )


@dataclass(frozen=True, slots=True)
class MissingCounter:
    """A budget counter admit.lua needs rebuilt first: the array {subject, period 1..3}."""

    subject: int  # 0-based
    period: int  # 1 daily, 2 monthly, 3 total

    @classmethod
    def parse(cls, raw: Reply) -> MissingCounter:
        subject, period = _items(raw)
        return cls(subject=_int(subject) - 1, period=_int(period))


@dataclass(frozen=True, slots=True)
class AdmitReply:
    """admit.lua's reply, one of
    {'missing', {counter, ...}}            budget counters to rebuild, then run again
    {'refused', {state, ...}, {failure, ...}}
    {'ok', output cap (-1 = none), reserved tokens, {state, ...}}
    with a `WindowState` per subject, a `Failure` per failed check."""

    outcome: str  # 'missing' | 'refused' | 'ok'
    missing: tuple[MissingCounter, ...] = ()
    states: tuple[WindowState, ...] = ()
    failures: tuple[Failure, ...] = ()
    output_cap: int | None = None
    reserved: int = 0

    @classmethod
    def parse(cls, reply: Reply) -> AdmitReply:
        items = _items(reply)
        outcome = text(items[0])
        if outcome == "missing":
            return cls(outcome, missing=tuple(MissingCounter.parse(c) for c in _items(items[1])))
        if outcome == "refused":
            return cls(
                outcome,
                states=tuple(WindowState.parse(state) for state in _items(items[1])),
                failures=tuple(Failure.parse(failure) for failure in _items(items[2])),
            )
        if outcome != "ok":
            raise ValueError(f"unknown admit outcome {outcome!r}")
        cap = _int(items[1])
        return cls(
            outcome,
            output_cap=cap if cap >= 0 else None,
            reserved=_int(items[2]),
            states=tuple(WindowState.parse(state) for state in _items(items[3])),
        )


# -- settle.lua -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettleArgs:
    """settle.lua's ARGV: now, admission id, real tokens, subject count, then per
    subject five flags ('1' or ''): tpm, live, daily, monthly, total. Replies 1."""

    now: str  # clock_arg()
    admission_id: str
    real_tokens: int
    subjects: tuple[SubjectPlan, ...]

    def argv(self) -> list[str]:
        argv = [self.now, self.admission_id, str(self.real_tokens), str(len(self.subjects))]
        for plan in self.subjects:
            daily, monthly, total = plan.budgets
            # Written out: this runs for every request, and a call per flag adds up.
            argv += (
                "1" if plan.tpm else "",
                "1" if plan.live else "",
                "1" if daily else "",
                "1" if monthly else "",
                "1" if total else "",
            )
        return argv


# -- refresh.lua ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshArgs:
    """refresh.lua's ARGV (its KEYS are the ticket's live sets); it replies with the
    number of leases still held (`RefreshReply`)."""

    now: str  # clock_arg()
    admission_id: str
    lease_ms: int
    state_ttl_ms: int

    def argv(self) -> list[str]:
        return [self.now, self.admission_id, str(self.lease_ms), str(self.state_ttl_ms)]


@dataclass(frozen=True, slots=True)
class RefreshReply:
    """How many of the ticket's leases were still held (and are now extended)."""

    alive: int

    @classmethod
    def parse(cls, reply: Reply) -> RefreshReply:
        return cls(alive=_int(reply))
