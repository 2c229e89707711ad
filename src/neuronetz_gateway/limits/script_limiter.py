"""`ScriptLimiter`: admission and settlement as three scripts over keyed counters.

The algorithm lives in the admit/settle/refresh scripts (limits/lua/, docs/LIMITS.md);
this class builds their arguments, rebuilds missing budget counters from the
`UsageSource`, and turns replies into admissions and refusals. Where the scripts run is
a `ScriptRunner`: Redis (`RedisLimiter`, shared by every replica) or this process
(`MemoryLimiter`, standalone mode). Both get the same arguments and give the same
replies, so everything a client sees is decided by the code here, once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol, cast

import structlog

from neuronetz_gateway import ids
from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits.decisions import (
    Failure,
    Subject,
    WindowState,
    ratelimit_headers,
    refusal,
    text,
)
from neuronetz_gateway.limits.keys import PERIODS, Periods, SubjectKeys, subject_keys
from neuronetz_gateway.limits.types import (
    Admission,
    AdmissionRequest,
    LimiterUnavailable,
    SubjectPlan,
    Ticket,
)
from neuronetz_gateway.limits.usage_source import UsageSource

log = structlog.get_logger(__name__)

# A counter can vanish again between its rebuild and the re-run (a second flush).
REBUILD_ATTEMPTS = 2
# Key names and plans per (tenant, key, limits, day): every request of a key needs the
# same ones, so they are built once. Cleared when full (a day has few distinct keys).
TARGETS_CACHE_SIZE = 10_000

ScriptName = Literal["admit", "settle", "refresh"]


class ScriptRunner(Protocol):
    """Runs one of the limiter's scripts atomically; `LimiterUnavailable` if it cannot."""

    async def run(self, script: ScriptName, keys: Sequence[str], args: Sequence[str]) -> object:
        """The script's reply, as Redis would give it (lists, ints, strings or bytes)."""
        ...


@dataclass(frozen=True, slots=True)
class _Target:
    """A subject of one admission: what the script checks and whose usage rebuilds it."""

    subject: Subject
    key_id: uuid.UUID | None
    plan: SubjectPlan
    limit_args: tuple[str, ...]  # the subject's six limits as admit.lua's ARGV


@dataclass(frozen=True, slots=True)
class _Clock:
    """One second's periods and the TTL arguments of the scripts."""

    second: int
    periods: Periods
    counter_ttls: tuple[str, ...]
    state_ttl_ms: int


_NO_REBUILT_COUNTERS = ("", "", "")


def new_admission_id() -> str:
    """A random id naming one admission in every structure the scripts keep."""
    return ids.random_hex()


_TargetsKey = tuple[uuid.UUID, uuid.UUID, LimitValues, LimitValues, date]


class ScriptLimiter:
    """The `Limiter`: one script run per admission, one per settlement."""

    def __init__(
        self,
        scripts: ScriptRunner,
        usage_source: UsageSource,
        *,
        lease_seconds: int,
        default_max_output_tokens: int,
    ) -> None:
        if lease_seconds < 1 or default_max_output_tokens < 1:
            raise ValueError("lease_seconds and default_max_output_tokens must be >= 1")
        self._scripts = scripts
        self._usage = usage_source
        self._clock_cache: _Clock | None = None
        self._targets_cache: dict[_TargetsKey, tuple[tuple[_Target, ...], tuple[str, ...]]] = {}
        self._lease_seconds = lease_seconds
        self._default_max_output_tokens = default_max_output_tokens

    async def admit(self, request: AdmissionRequest) -> Admission:
        """Admit the request or raise `Refused`; `LimiterUnavailable` when undecidable."""
        if request.tenant_limits.is_unlimited and request.key_limits.is_unlimited:
            ticket = Ticket("", request.request_id, request.tenant_id)
            return Admission(ticket=ticket, output_cap=None, headers={})

        clock = self._clock_at(time.time() if request.now is None else request.now)
        periods, state_ttl_ms = clock.periods, clock.state_ttl_ms
        targets, keys = self._targets(request, periods)
        admission_id = new_admission_id()
        initial: dict[str, str] = {}
        args = self._admit_args(request, admission_id, clock, targets, initial)
        reply = _items(await self._scripts.run("admit", keys, args))
        for _ in range(REBUILD_ATTEMPTS):
            if text(reply[0]) != "missing":
                break
            missing = [text(item) for item in _items(reply[1])]
            initial = await self._rebuild(request, targets, periods, missing)
            args = self._admit_args(request, admission_id, clock, targets, initial)
            reply = _items(await self._scripts.run("admit", keys, args))
        if text(reply[0]) == "missing":
            log.error("limiter_rebuild_failed", tenant_id=str(request.tenant_id))
            raise LimiterUnavailable("budget counters could not be rebuilt")

        if text(reply[0]) == "refused":
            states = [WindowState.parse(cast(list[object], raw)) for raw in _items(reply[1])]
            failures = [Failure.parse(cast(list[object], raw)) for raw in _items(reply[2])]
            subjects = [target.subject for target in targets]
            raise refusal(failures, states, subjects, periods)

        output_cap, reserved = int(cast(int, reply[1])), int(cast(int, reply[2]))
        states = [WindowState.parse(cast(list[object], raw)) for raw in _items(reply[3])]
        ticket = Ticket(
            admission_id=admission_id,
            request_id=request.request_id,
            tenant_id=request.tenant_id,
            subjects=tuple(target.plan for target in targets),
            keys=keys,
            reserved_tokens=reserved,
            lease_seconds=self._lease_seconds,
            state_ttl_ms=state_ttl_ms,
        )
        return Admission(
            ticket=ticket,
            output_cap=output_cap if output_cap >= 0 else None,
            headers=ratelimit_headers(states),
        )

    async def settle(
        self,
        ticket: Ticket,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        now: float | None = None,
    ) -> None:
        """Release the lease, true up the budgets, record the tokens for tpm. Once per
        ticket; later calls do nothing. Raises `LimiterUnavailable` if the store is down
        (the lease then expires and the reservation is reclaimed after a lease)."""
        if ticket.is_noop or ticket.settled:
            return
        real = max(0, prompt_tokens) + max(0, completion_tokens)
        args: list[str] = [_clock(now), ticket.admission_id, str(real), str(len(ticket.subjects))]
        for plan in ticket.subjects:
            args += [_flag(plan.tpm), _flag(plan.live), *(_flag(b) for b in plan.budgets)]
        await self._scripts.run("settle", ticket.keys, args)
        ticket.settled = True

    async def refresh(self, ticket: Ticket, *, now: float | None = None) -> None:
        """Extend the ticket's lease by `lease_seconds` from now (streams, every
        `ticket.refresh_interval` s). A lease already reclaimed is not brought back."""
        live = [plan.keys[2] for plan in ticket.subjects if plan.live]
        if not live or ticket.settled:
            return
        lease_ms = str(ticket.lease_seconds * 1000)
        args = [_clock(now), ticket.admission_id, lease_ms, str(ticket.state_ttl_ms)]
        alive = await self._scripts.run("refresh", live, args)
        if int(cast(int, alive)) < len(live):
            log.warning("limiter_lease_lost", request_id=ticket.request_id)

    def _clock_at(self, now: float) -> _Clock:
        """The periods of `now` and the TTL arguments derived from them, computed once
        per second (TTLs are then up to a second long, against an hour of slack)."""
        second = int(now)
        cached = self._clock_cache
        if cached is None or cached.second != second:
            periods = Periods.at(now)
            ttls = periods.counter_ttls_ms()
            cached = _Clock(
                second=second,
                periods=periods,
                counter_ttls=tuple(str(ttl) for ttl in ttls),
                state_ttl_ms=max(*ttls, 2 * self._lease_seconds * 1000),
            )
            self._clock_cache = cached
        return cached

    def _targets(
        self, request: AdmissionRequest, periods: Periods
    ) -> tuple[tuple[_Target, ...], tuple[str, ...]]:
        """The request's subjects and their keys, built once per key, limits and day."""
        cache_key = (
            request.tenant_id,
            request.key_id,
            request.tenant_limits,
            request.key_limits,
            periods.day,
        )
        cached = self._targets_cache.get(cache_key)
        if cached is None:
            if len(self._targets_cache) >= TARGETS_CACHE_SIZE:
                self._targets_cache.clear()
            targets = tuple(_targets(request, periods))
            keys = tuple(key for target in targets for key in target.plan.keys)
            cached = self._targets_cache[cache_key] = (targets, keys)
        return cached

    def _admit_args(
        self,
        request: AdmissionRequest,
        admission_id: str,
        clock: _Clock,
        targets: Sequence[_Target],
        initial: dict[str, str],
    ) -> list[str]:
        """ARGV of admit.lua (its header comment is the reference)."""
        ceiling = -1
        if request.produces_output:
            ceiling = self._default_max_output_tokens
            if request.client_output_cap is not None and request.client_output_cap >= 1:
                ceiling = min(ceiling, request.client_output_cap)
        args = [
            _clock(request.now),
            admission_id,
            str(self._lease_seconds * 1000),
            str(max(0, request.prompt_estimate)),
            str(ceiling),
            *clock.counter_ttls,
            str(clock.state_ttl_ms),
            str(len(targets)),
        ]
        for index, target in enumerate(targets, start=1):
            args += target.limit_args
            if initial:
                args += [initial.get(f"{index}:{period}", "") for period in (1, 2, 3)]
            else:
                args += _NO_REBUILT_COUNTERS
        return args

    async def _rebuild(
        self,
        request: AdmissionRequest,
        targets: Sequence[_Target],
        periods: Periods,
        missing: Sequence[str],
    ) -> dict[str, str]:
        """Initial "used|gen" values of the missing counters, summed from the truth."""

        async def used(entry: str) -> tuple[str, str]:
            subject, period = (int(part) for part in entry.split(":"))
            since = periods.since(PERIODS[period - 1])
            key_id = targets[subject - 1].key_id
            tokens = await self._usage.used_tokens(request.tenant_id, key_id, since)
            return entry, f"{tokens}|{uuid.uuid4().hex[:16]}"

        try:
            rebuilt = dict(await asyncio.gather(*(used(entry) for entry in missing)))
        except Exception as error:
            log.error("limiter_rebuild_failed", error=type(error).__name__)
            raise LimiterUnavailable("usage could not be read to rebuild a budget") from error
        log.info("limiter_counters_rebuilt", tenant_id=str(request.tenant_id), counters=missing)
        return rebuilt


def _targets(request: AdmissionRequest, periods: Periods) -> list[_Target]:
    """The key, then the tenant; a subject without any limit is left out."""
    candidates: list[tuple[Subject, uuid.UUID | None]] = [
        (Subject("key", request.key_limits), request.key_id),
        (Subject("tenant", request.tenant_limits), None),
    ]
    return [
        _Target(
            subject,
            key_id,
            _plan(subject, subject_keys(request.tenant_id, key_id, periods)),
            _limit_args(subject.limits),
        )
        for subject, key_id in candidates
        if not subject.limits.is_unlimited
    ]


def _limit_args(limits: LimitValues) -> tuple[str, ...]:
    return tuple(
        _optional(value)
        for value in (
            limits.rpm,
            limits.tpm,
            limits.max_concurrent,
            limits.daily_tokens,
            limits.monthly_tokens,
            limits.total_tokens,
        )
    )


def _plan(subject: Subject, keys: SubjectKeys) -> SubjectPlan:
    limits = subject.limits
    budgets = (
        limits.daily_tokens is not None,
        limits.monthly_tokens is not None,
        limits.total_tokens is not None,
    )
    return SubjectPlan(
        scope=subject.scope,
        keys=keys.as_tuple(),
        tpm=limits.tpm is not None,
        live=limits.max_concurrent is not None or any(budgets),
        budgets=budgets,
    )


def _items(value: object) -> list[object]:
    return cast(list[object], value)


def _clock(now: float | None) -> str:
    return "" if now is None else str(int(now * 1000))


def _optional(value: int | None) -> str:
    return "" if value is None else str(value)


def _flag(value: bool) -> str:
    return "1" if value else ""
