"""`ScriptLimiter`: admission and settlement as three scripts over keyed counters.

The algorithm lives in the admit/settle/refresh scripts (limits/lua/, docs/LIMITS.md),
their arguments and replies in limits/layouts.py; this class fills the arguments,
rebuilds missing budget counters from the `UsageSource`, and turns replies into
admissions and refusals. Where the scripts run is a `ScriptHost`: Redis (`RedisLimiter`,
shared by every replica) or this process (`MemoryLimiter`, standalone mode). Both run
the same Lua, so everything a client sees is decided by one implementation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import structlog

from neuronetz_gateway import ids
from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import scripts
from neuronetz_gateway.limits.decisions import Subject, ratelimit_headers, refusal
from neuronetz_gateway.limits.keys import PERIODS, Periods, SubjectKeys, subject_keys
from neuronetz_gateway.limits.layouts import (
    AdmitArgs,
    AdmitReply,
    AdmitSubject,
    MissingCounter,
    RefreshArgs,
    RefreshReply,
    SettleArgs,
    clock_arg,
)
from neuronetz_gateway.limits.types import (
    Admission,
    AdmissionRequest,
    LimiterUnavailable,
    SubjectPlan,
    Ticket,
)
from neuronetz_gateway.limits.usage_source import UsageSource
from neuronetz_gateway.scripting import Reply, Script, ScriptFailed, ScriptHost, StoreUnavailable

log = structlog.get_logger(__name__)

# A counter can vanish again between its rebuild and the re-run (a second flush).
REBUILD_ATTEMPTS = 2
# Key names and plans per (tenant, key, limits, day): every request of a key needs the
# same ones, so they are built once. Cleared when full (a day has few distinct keys).
TARGETS_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class _Target:
    """A subject of one admission: what the script checks and whose usage rebuilds it."""

    subject: Subject
    key_id: uuid.UUID | None
    plan: SubjectPlan
    args: AdmitSubject  # the subject's limits as admit.lua's ARGV (nothing rebuilt)


@dataclass(frozen=True, slots=True)
class _Clock:
    """One second's periods and the TTL arguments of the scripts."""

    second: int
    periods: Periods
    counter_ttls: tuple[str, str, str]
    state_ttl_ms: int


def new_admission_id() -> str:
    """A random id naming one admission in every structure the scripts keep."""
    return ids.random_hex()


_TargetsKey = tuple[uuid.UUID, uuid.UUID, LimitValues, LimitValues, date]


class ScriptLimiter:
    """The `Limiter`: one script run per admission, one per settlement."""

    def __init__(
        self,
        host: ScriptHost,
        usage_source: UsageSource,
        *,
        lease_seconds: int,
        default_max_output_tokens: int,
    ) -> None:
        if lease_seconds < 1 or default_max_output_tokens < 1:
            raise ValueError("lease_seconds and default_max_output_tokens must be >= 1")
        self.host = host
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
        args = self._admit_args(request, admission_id, clock, targets, {})
        reply = AdmitReply.parse(await self._run(scripts.ADMIT, keys, args.argv()))
        for _ in range(REBUILD_ATTEMPTS):
            if reply.outcome != "missing":
                break
            rebuilt = await self._rebuild(request, targets, periods, reply.missing)
            args = self._admit_args(request, admission_id, clock, targets, rebuilt)
            reply = AdmitReply.parse(await self._run(scripts.ADMIT, keys, args.argv()))
        if reply.outcome == "missing":
            log.error("limiter_rebuild_failed", tenant_id=str(request.tenant_id))
            raise LimiterUnavailable("budget counters could not be rebuilt")

        if reply.outcome == "refused":
            subjects = [target.subject for target in targets]
            raise refusal(reply.failures, reply.states, subjects, periods)

        ticket = Ticket(
            admission_id=admission_id,
            request_id=request.request_id,
            tenant_id=request.tenant_id,
            subjects=tuple(target.plan for target in targets),
            keys=keys,
            reserved_tokens=reply.reserved,
            lease_seconds=self._lease_seconds,
            state_ttl_ms=state_ttl_ms,
        )
        return Admission(
            ticket=ticket,
            output_cap=reply.output_cap,
            headers=ratelimit_headers(reply.states),
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
        args = SettleArgs(clock_arg(now), ticket.admission_id, real, ticket.subjects)
        await self._run(scripts.SETTLE, ticket.keys, args.argv(), deferred=True)
        ticket.settled = True

    async def refresh(self, ticket: Ticket, *, now: float | None = None) -> None:
        """Extend the ticket's lease by `lease_seconds` from now (streams, every
        `ticket.refresh_interval` s). A lease already reclaimed is not brought back."""
        live = [plan.keys[2] for plan in ticket.subjects if plan.live]
        if not live or ticket.settled:
            return
        lease_ms = ticket.lease_seconds * 1000
        args = RefreshArgs(clock_arg(now), ticket.admission_id, lease_ms, ticket.state_ttl_ms)
        reply = RefreshReply.parse(
            await self._run(scripts.REFRESH, live, args.argv(), deferred=True)
        )
        if reply.alive < len(live):
            log.warning("limiter_lease_lost", request_id=ticket.request_id)

    async def _run(
        self, script: Script, keys: Sequence[str], argv: Sequence[str], *, deferred: bool = False
    ) -> Reply:
        """The script's reply; every failure is `LimiterUnavailable` (fail closed).
        `deferred`: nobody waits on it (settlement, refresh), see `ScriptHost.run`."""
        try:
            return await self.host.run(script, keys, argv, deferred=deferred)
        except StoreUnavailable as error:
            log.error("limiter_unavailable", error=str(error))
            raise LimiterUnavailable("the rate-limit store is unavailable") from error
        except ScriptFailed as error:
            # A script error is a bug or a store in trouble (OOM, read-only replica):
            # either way nothing was decided, so nothing is admitted.
            log.error("limiter_script_failed", script=script.name, error=str(error)[:200])
            raise LimiterUnavailable("the rate-limit store refused the script") from error

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
                counter_ttls=(str(ttls[0]), str(ttls[1]), str(ttls[2])),
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
        rebuilt: dict[MissingCounter, str],
    ) -> AdmitArgs:
        """admit.lua's arguments, with the initial values of `rebuilt` counters."""
        ceiling = -1
        if request.produces_output:
            ceiling = self._default_max_output_tokens
            if request.client_output_cap is not None and request.client_output_cap >= 1:
                ceiling = min(ceiling, request.client_output_cap)
        subjects = tuple(target.args for target in targets)
        if rebuilt:
            subjects = tuple(
                dataclasses.replace(
                    subject,
                    rebuilt=(
                        rebuilt.get(MissingCounter(index, 1)),
                        rebuilt.get(MissingCounter(index, 2)),
                        rebuilt.get(MissingCounter(index, 3)),
                    ),
                )
                for index, subject in enumerate(subjects)
            )
        return AdmitArgs(
            now=clock_arg(request.now),
            admission_id=admission_id,
            lease_ms=self._lease_seconds * 1000,
            prompt_estimate=max(0, request.prompt_estimate),
            output_ceiling=ceiling,
            counter_ttls_ms=clock.counter_ttls,
            state_ttl_ms=clock.state_ttl_ms,
            subjects=subjects,
        )

    async def _rebuild(
        self,
        request: AdmissionRequest,
        targets: Sequence[_Target],
        periods: Periods,
        missing: Sequence[MissingCounter],
    ) -> dict[MissingCounter, str]:
        """Initial "used|gen" values of the missing counters, summed from the truth."""

        async def used(counter: MissingCounter) -> tuple[MissingCounter, str]:
            since = periods.since(PERIODS[counter.period - 1])
            key_id = targets[counter.subject].key_id
            tokens = await self._usage.used_tokens(request.tenant_id, key_id, since)
            return counter, f"{tokens}|{uuid.uuid4().hex[:16]}"

        try:
            rebuilt = dict(await asyncio.gather(*(used(entry) for entry in missing)))
        except Exception as error:
            log.error("limiter_rebuild_failed", error=type(error).__name__)
            raise LimiterUnavailable("usage could not be read to rebuild a budget") from error
        log.info(
            "limiter_counters_rebuilt",
            tenant_id=str(request.tenant_id),
            counters=[f"{counter.subject + 1}:{counter.period}" for counter in missing],
        )
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
            _admit_subject(subject.limits),
        )
        for subject, key_id in candidates
        if not subject.limits.is_unlimited
    ]


def _admit_subject(limits: LimitValues) -> AdmitSubject:
    return AdmitSubject(
        rpm=limits.rpm,
        tpm=limits.tpm,
        max_concurrent=limits.max_concurrent,
        budgets=(limits.daily_tokens, limits.monthly_tokens, limits.total_tokens),
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
