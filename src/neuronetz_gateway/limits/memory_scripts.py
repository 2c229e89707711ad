"""The limiter's scripts (limits/lua/) in Python, over a `MemoryStore`.

A port, statement for statement: same arguments (strings, as Redis passes them), same
replies, same order of checks and writes. Read lua/admit.lua's header for the argument
and reply layout; a change to a Lua script needs the same change here, and the tests in
tests/limits/ run against both (they cannot pass with one of the two changed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from neuronetz_gateway.limits.memory_store import MemoryStore

KEYS_PER_SUBJECT = 7
ARGS_PER_SUBJECT = 9
WINDOW_MS = 60_000
TPM_TTL_MS = 62_000
RECLAIM_BATCH = 100

Reply = list[object]


def _clock(argument: str) -> int:
    """The script's `now` in ms: the caller's, else this process's clock (Redis: TIME)."""
    return int(argument) if argument else int(time.time() * 1000)


def _optional(argument: str) -> int | None:
    return int(argument) if argument else None


@dataclass(frozen=True, slots=True)
class _Keys:
    rpm: str
    tpm: str
    live: str
    resv: str
    counters: tuple[str, str, str]

    @classmethod
    def of(cls, keys: Sequence[str], subject: int) -> _Keys:
        """The keys of the 0-based `subject`."""
        k = keys[subject * KEYS_PER_SUBJECT : (subject + 1) * KEYS_PER_SUBJECT]
        return cls(rpm=k[0], tpm=k[1], live=k[2], resv=k[3], counters=(k[4], k[5], k[6]))


@dataclass(slots=True)
class _Subject:
    keys: _Keys
    rpm: int | None
    tpm: int | None
    concurrent: int | None
    budgets: tuple[int | None, int | None, int | None]
    init: tuple[str, str, str]
    used: list[int] = field(default_factory=lambda: [0, 0, 0])

    @property
    def has_budget(self) -> bool:
        return any(limit is not None for limit in self.budgets)

    @property
    def live(self) -> bool:
        return self.concurrent is not None or self.has_budget

    @property
    def budget_flags(self) -> tuple[bool, bool, bool]:
        daily, monthly, total = (limit is not None for limit in self.budgets)
        return daily, monthly, total


def _release(
    store: MemoryStore,
    keys: _Keys,
    budgets: Sequence[bool],
    admission_id: str,
    real: int,
) -> None:
    """common.lua `release`: drop the reservation, give it back to the counters it was
    taken from (same gen), add `real` settled tokens to every existing counter."""
    record = store.hget(keys.resv, admission_id)
    amount = 0
    gens: list[str | None] = [None, None, None]
    if record is not None:
        store.hdel(keys.resv, admission_id)
        parts = record.split("|")
        amount = int(parts[0])
        gens = list(parts[1:4])
    for period in range(3):
        if not budgets[period]:
            continue
        counter = keys.counters[period]
        gen = store.hget(counter, "gen")
        if gen is None:
            continue
        if amount > 0 and gens[period] == gen and store.hincrby(counter, "resv", -amount) < 0:
            store.hset(counter, {"resv": 0})
        if real > 0:
            store.hincrby(counter, "used", real)


def _tpm_window(store: MemoryStore, key: str, now: int) -> tuple[list[tuple[int, int]], int]:
    """common.lua `tpm_window`: drop buckets that no longer count; the rest and their sum."""
    oldest = now // 1000 - 60
    buckets: list[tuple[int, int]] = []
    stale: list[str] = []
    for second, tokens in store.hgetall(key).items():
        if int(second) < oldest:
            stale.append(second)
        else:
            buckets.append((int(second), int(tokens)))
    if stale:
        store.hdel(key, *stale)
    return buckets, sum(tokens for _, tokens in buckets)


def _subjects(keys: Sequence[str], argv: Sequence[str], count: int) -> list[_Subject]:
    subjects = []
    for s in range(count):
        a = 10 + s * ARGS_PER_SUBJECT
        subjects.append(
            _Subject(
                keys=_Keys.of(keys, s),
                rpm=_optional(argv[a]),
                tpm=_optional(argv[a + 1]),
                concurrent=_optional(argv[a + 2]),
                budgets=(_optional(argv[a + 3]), _optional(argv[a + 4]), _optional(argv[a + 5])),
                init=(argv[a + 6], argv[a + 7], argv[a + 8]),
            )
        )
    return subjects


def admit(store: MemoryStore, keys: Sequence[str], argv: Sequence[str]) -> Reply:
    """lua/admit.lua."""
    now = _clock(argv[0])
    admission_id = argv[1]
    lease_ms, prompt_estimate, output_ceiling = int(argv[2]), int(argv[3]), int(argv[4])
    counter_ttls = (int(argv[5]), int(argv[6]), int(argv[7]))
    state_ttl = int(argv[8])
    subjects = _subjects(keys, argv, int(argv[9]))

    # 1. Budget counters must exist before they are used.
    missing: list[str] = []
    for s, subject in enumerate(subjects, start=1):
        for p in range(3):
            counter = subject.keys.counters[p]
            if subject.budgets[p] is not None and not store.exists(counter):
                if subject.init[p] == "":
                    missing.append(f"{s}:{p + 1}")
                else:
                    initial_used, gen = subject.init[p].split("|")[:2]
                    store.hset(counter, {"used": initial_used, "resv": 0, "gen": gen})
                    store.pexpire(counter, counter_ttls[p])
    if missing:
        return ["missing", missing]

    # 2. Housekeeping and checks; nothing is consumed yet.
    failures: list[list[object]] = []
    headers: list[list[int]] = []
    tightest: tuple[int, int, int] | None = None  # (subject, period 1..3, headroom)

    def fail(reason: str, s: int, wait: int, period: int, detail: str) -> None:
        failures.append([reason, s, max(0, wait), period, detail])

    for s, subject in enumerate(subjects, start=1):
        k = subject.keys
        h = [-1, -1, -1, -1, -1]
        if subject.live:
            for lease in store.zrange_up_to(k.live, now, RECLAIM_BATCH):
                store.zrem(k.live, lease)
                if subject.has_budget:
                    _release(store, k, subject.budget_flags, lease, 0)
        if subject.concurrent is not None and store.zcard(k.live) >= subject.concurrent:
            first = store.zfirst(k.live)
            wait = lease_ms if first is None else first[1] - now  # a limit of 0: no lease
            fail("concurrency", s, wait, 0, "")
        if subject.rpm is not None:
            store.zremrange_below(k.rpm, now - WINDOW_MS)
            admitted = store.zcard(k.rpm)
            oldest = store.zfirst(k.rpm)
            reset = 0 if oldest is None else oldest[1] + WINDOW_MS + 1 - now
            h[0], h[1], h[2] = subject.rpm, max(0, subject.rpm - admitted), max(0, reset)
            if admitted >= subject.rpm:
                fail("rpm", s, reset, 0, "")
        if subject.tpm is not None:
            buckets, total = _tpm_window(store, k.tpm, now)
            h[3], h[4] = subject.tpm, max(0, subject.tpm - total)
            if total >= subject.tpm:
                left, wait = total, WINDOW_MS
                for second, tokens in sorted(buckets):
                    left -= tokens
                    if left < subject.tpm:
                        wait = (second + 61) * 1000 - now
                        break
                fail("tpm", s, wait, 0, "")
        for p in range(3):
            limit = subject.budgets[p]
            if limit is None:
                continue
            used_text = store.hget(k.counters[p], "used")
            reserved_text = store.hget(k.counters[p], "resv")
            used = int(used_text) if used_text else 0
            headroom = limit - used - (int(reserved_text) if reserved_text else 0)
            if tightest is None or headroom < tightest[2]:
                tightest = (s, p + 1, headroom)
            subject.used[p] = used
        headers.append(h)

    # 3. Budgets: the output cap follows from the tightest headroom.
    output_cap, reserve = -1, 0
    if tightest is not None:
        need = prompt_estimate + 1 if output_ceiling >= 0 else max(prompt_estimate, 1)
        if tightest[2] < need:
            exhausted = False
            for s, subject in enumerate(subjects, start=1):
                for p in range(3):
                    limit = subject.budgets[p]
                    if limit is not None and limit - subject.used[p] < need:
                        fail("budget", s, -1, p + 1, "exhausted")
                        exhausted = True
            if not exhausted:
                fail("budget", tightest[0], 1000, tightest[1], "reserved")
        elif output_ceiling < 0:
            reserve = prompt_estimate
        else:
            output_cap = min(output_ceiling, tightest[2] - prompt_estimate)
            reserve = prompt_estimate + output_cap

    if failures:
        return ["refused", headers, failures]

    # 4. Commit: every check passed.
    for index, subject in enumerate(subjects):
        k = subject.keys
        if subject.rpm is not None:
            store.zadd(k.rpm, now, admission_id)
            store.pexpire(k.rpm, WINDOW_MS + 1000)
            oldest = store.zfirst(k.rpm)
            oldest_ms = now if oldest is None else oldest[1]
            headers[index][1] = max(0, headers[index][1] - 1)
            headers[index][2] = max(0, oldest_ms + WINDOW_MS + 1 - now)
        if subject.live:
            store.zadd(k.live, now + lease_ms, admission_id)
            store.pexpire(k.live, state_ttl)
        # A re-sent admission must not reserve twice (see admit.lua).
        if subject.has_budget and not store.hexists(k.resv, admission_id):
            gens = ["", "", ""]
            for p in range(3):
                if subject.budgets[p] is not None:
                    counter = k.counters[p]
                    store.hincrby(counter, "resv", reserve)
                    store.pexpire(counter, counter_ttls[p])
                    gens[p] = store.hget(counter, "gen") or ""
            store.hset(k.resv, {admission_id: f"{reserve}|{'|'.join(gens)}"})
            store.pexpire(k.resv, state_ttl)
    return ["ok", output_cap, reserve, headers]


def settle(store: MemoryStore, keys: Sequence[str], argv: Sequence[str]) -> int:
    """lua/settle.lua."""
    now = _clock(argv[0])
    admission_id, real = argv[1], int(argv[2])
    for s in range(int(argv[3])):
        a = 4 + s * 5
        k = _Keys.of(keys, s)
        if argv[a + 1] == "1":
            store.zrem(k.live, admission_id)
        budgets = (argv[a + 2] == "1", argv[a + 3] == "1", argv[a + 4] == "1")
        if any(budgets):
            _release(store, k, budgets, admission_id, real)
        if argv[a] == "1":
            _tpm_window(store, k.tpm, now)
            if real > 0:
                store.hincrby(k.tpm, str(now // 1000), real)
                store.pexpire(k.tpm, TPM_TTL_MS)
    return 1


def refresh(store: MemoryStore, keys: Sequence[str], argv: Sequence[str]) -> int:
    """lua/refresh.lua: push the lease expiry where the lease still exists."""
    now = _clock(argv[0])
    admission_id, lease_ms, ttl = argv[1], int(argv[2]), int(argv[3])
    alive = 0
    for key in keys:
        if store.zscore(key, admission_id) is not None:
            store.zadd(key, now + lease_ms, admission_id, only_existing=True)
            store.pexpire(key, ttl)
            alive += 1
    return alive
