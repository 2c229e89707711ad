"""Differential test: the limiter's scripts give the same replies on Redis and in-process.

Hypothesis draws a key's and a tenant's limits and a sequence of admit / settle /
refresh / clock steps; every step runs the real script on real Redis (database 11,
keys of a fresh tenant, deleted afterwards) and on a `LuaHost`, and every raw reply
must be identical. At the end the whole state of both stores (every key the scripts
used, read by one script) must be identical too. Budget counters the admit script asks
to rebuild get the same initial values on both sides.

Keys never expire during a sequence (TTLs are a minute or more, on each store's own
clock), so the scripts' `now` argument is the only clock that moves.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import scripts
from neuronetz_gateway.limits.keys import Periods, subject_keys
from neuronetz_gateway.limits.layouts import (
    AdmitArgs,
    AdmitReply,
    AdmitSubject,
    RefreshArgs,
    SettleArgs,
)
from neuronetz_gateway.limits.types import SubjectPlan
from neuronetz_gateway.scripting import LuaHost, RedisHost, Reply, RespClient, Script
from tests.support.databases import REDIS_URL

DIFFERENTIAL_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + "/11"
EXAMPLES = 1000
START = datetime(2026, 11, 26, 23, 58, tzinfo=UTC).timestamp()  # near a day's end
LEASE_MS = 5000

# Every structure of every key given, in a canonical form (hash fields sorted).
DUMP = Script(
    "dump",
    """
    local out = {}
    for i, key in ipairs(KEYS) do
      local kind = redis.call('TYPE', key)['ok']
      local content = {}
      if kind == 'hash' then
        local flat = redis.call('HGETALL', key)
        local names = {}
        for j = 1, #flat, 2 do names[#names + 1] = flat[j] end
        table.sort(names)
        for _, name in ipairs(names) do
          content[#content + 1] = name
          content[#content + 1] = redis.call('HGET', key, name)
        end
      elseif kind == 'zset' then
        content = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
      end
      out[i] = {kind, content}
    end
    return out
    """,
)

# Small enough to be reached within a dozen steps, yet mostly loose enough to admit:
# a subject has up to six limits, and one tight value refuses every request.
NONE = [None] * 4
optional_rpm = st.sampled_from([*NONE, 0, 1, 2, 5, 10])
optional_tpm = st.sampled_from([*NONE, 0, 50, 300, 1000, 5000])
optional_concurrency = st.sampled_from([*NONE, 0, 1, 2, 4])
optional_budget = st.sampled_from([*NONE, *NONE, 0, 200, 1000, 3000, 100_000])
limit_values = st.builds(
    LimitValues,
    rpm=optional_rpm,
    tpm=optional_tpm,
    max_concurrent=optional_concurrency,
    daily_tokens=optional_budget,
    monthly_tokens=optional_budget,
    total_tokens=optional_budget,
)

Step = tuple[str, int, int]
admit_step = st.tuples(
    st.just("admit"), st.integers(0, 80), st.sampled_from([100, -1, 1, 20, 1000])
)
steps = st.lists(
    st.one_of(
        admit_step,
        admit_step,
        st.tuples(st.just("settle"), st.integers(0, 9), st.integers(0, 600)),
        st.tuples(st.just("refresh"), st.integers(0, 9), st.just(0)),
        st.tuples(
            st.just("clock"),
            st.sampled_from([1000, 1, 999, 1001, 4999, 5000, 30_000, 60_000, 60_001, 61_000]),
            st.just(0),
        ),
    ),
    min_size=1,
    max_size=12,
)


@dataclass
class Sequence:
    """One drawn scenario: the subjects' limits, usage to rebuild from, the steps."""

    limits: list[LimitValues]
    used: int
    steps: list[Step]


sequences = st.builds(
    Sequence,
    limits=st.lists(limit_values, min_size=1, max_size=2),
    used=st.sampled_from([0, 0, 10, 100, 900, 5000]),
    steps=st.tuples(admit_step, steps).map(lambda drawn: [drawn[0], *drawn[1]]),
)


def plan(limits: LimitValues, keys: tuple[str, ...]) -> SubjectPlan:
    budgets = (
        limits.daily_tokens is not None,
        limits.monthly_tokens is not None,
        limits.total_tokens is not None,
    )
    return SubjectPlan(
        scope="key",
        keys=keys,
        tpm=limits.tpm is not None,
        live=limits.max_concurrent is not None or any(budgets),
        budgets=budgets,
    )


class Hosts:
    """Redis and a `LuaHost`, driven in lockstep; `run` returns both replies."""

    def __init__(self, runner: asyncio.Runner, redis: RedisHost) -> None:
        self.runner = runner
        self.redis = redis
        self.lua = LuaHost()

    def run(self, script: Script, keys: tuple[str, ...], argv: list[str]) -> tuple[Reply, Reply]:
        on_redis = self.runner.run(self.redis.run(script, keys, argv))
        return on_redis, self.lua.run_now(script, keys, argv)


def play(hosts: Hosts, drawn: Sequence) -> None:
    """Runs the steps on both hosts and asserts that every reply is the same."""
    tenant = uuid.uuid4()
    periods = Periods.at(START)
    subject_ids = [uuid.uuid4(), None][: len(drawn.limits)]
    all_keys = [subject_keys(tenant, s, periods).as_tuple() for s in subject_ids]
    keys = tuple(key for subject in all_keys for key in subject)
    plans = tuple(plan(lim, k) for lim, k in zip(drawn.limits, all_keys, strict=True))
    ttls = periods.counter_ttls_ms()
    admitted: list[str] = []
    now = int(START * 1000)
    try:
        for index, (kind, first, second) in enumerate(drawn.steps):
            if kind == "clock":
                now += first
                continue
            if kind == "admit":
                replies = admit(hosts, drawn, keys, now, f"a{index}", first, second, ttls)
                if AdmitReply.parse(replies[0]).outcome == "ok":
                    admitted.append(f"a{index}")
            elif kind == "settle":
                ticket = admitted[first % len(admitted)] if admitted else "never-admitted"
                argv = SettleArgs(str(now), ticket, second, plans).argv()
                replies = hosts.run(scripts.SETTLE, keys, argv)
            else:
                ticket = admitted[first % len(admitted)] if admitted else "never-admitted"
                live = tuple(p.keys[2] for p in plans if p.live)
                argv = RefreshArgs(str(now), ticket, LEASE_MS, max(ttls)).argv()
                replies = hosts.run(scripts.REFRESH, live, argv)
            assert replies[1] == replies[0], f"step {index} {kind}"
        on_redis, in_process = hosts.run(DUMP, keys, [])
        assert in_process == on_redis, "the stores differ after the steps"
    finally:
        hosts.runner.run(hosts.redis.client.execute("DEL", *keys))


def admit(
    hosts: Hosts,
    drawn: Sequence,
    keys: tuple[str, ...],
    now: int,
    admission_id: str,
    prompt: int,
    ceiling: int,
    ttls: tuple[int, int, int],
) -> tuple[Reply, Reply]:
    """admit.lua on both hosts, rebuilding missing counters (from `drawn.used`) once."""
    rebuilt: dict[tuple[int, int], str] = {}
    for _ in range(2):
        subjects = tuple(
            AdmitSubject(
                rpm=limits.rpm,
                tpm=limits.tpm,
                max_concurrent=limits.max_concurrent,
                budgets=(limits.daily_tokens, limits.monthly_tokens, limits.total_tokens),
                rebuilt=(rebuilt.get((s, 1)), rebuilt.get((s, 2)), rebuilt.get((s, 3))),
            )
            for s, limits in enumerate(drawn.limits)
        )
        argv = AdmitArgs(
            now=str(now),
            admission_id=admission_id,
            lease_ms=LEASE_MS,
            prompt_estimate=prompt,
            output_ceiling=ceiling,
            counter_ttls_ms=(str(ttls[0]), str(ttls[1]), str(ttls[2])),
            state_ttl_ms=max(ttls),
            subjects=subjects,
        ).argv()
        replies = hosts.run(scripts.ADMIT, keys, argv)
        assert replies[1] == replies[0], f"admit {admission_id}"
        reply = AdmitReply.parse(replies[0])
        event(f"admit {reply.outcome}")
        for failure in reply.failures:
            event(f"refused: {failure.reason}")
        if reply.outcome != "missing":
            break
        rebuilt = {
            (c.subject, c.period): f"{drawn.used}|g{c.subject}{c.period}" for c in reply.missing
        }
    return replies


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    with asyncio.Runner() as runner:
        client = RespClient(DIFFERENTIAL_REDIS_URL)
        yield Hosts(runner, RedisHost(client))
        runner.run(client.aclose())


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(drawn=sequences)
def test_redis_and_in_process_reply_alike(hosts: Hosts, drawn: Sequence) -> None:
    play(hosts, drawn)


class Tampered(Hosts):
    """Hosts where the in-process store has one more request in the key's rpm window."""

    tampered = False

    def run(self, script: Script, keys: tuple[str, ...], argv: list[str]) -> tuple[Reply, Reply]:
        if script is scripts.ADMIT and not self.tampered:
            self.tampered = True
            extra = Script("extra", "return redis.call('ZADD', KEYS[1], ARGV[1], 'extra')")
            self.lua.run_now(extra, [keys[0]], [argv[0]])
        return super().run(script, keys, argv)


def test_a_difference_is_caught(hosts: Hosts) -> None:
    tampered = Tampered(hosts.runner, hosts.redis)
    drawn = Sequence([LimitValues(rpm=1)], 0, [("admit", 10, 100)])
    with pytest.raises(AssertionError, match="admit"):
        play(tampered, drawn)
