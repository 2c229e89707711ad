"""`MemoryStore`: the few Redis structures the limiter's scripts use, in this process.

Sorted sets and hashes under string keys, with millisecond TTLs on the real (monotonic)
clock exactly as Redis keeps them: the scripts' injectable `now` moves windows and
leases, never key expiry. Like Redis, an emptied set or hash ceases to exist, and
writing to a key keeps its TTL. Expired keys are dropped when touched and by
`purge_expired()`, so subjects that stop sending requests leave nothing behind.

Not thread-safe; the asyncio loop that owns it never interleaves one script run with
another (the scripts contain no await), which is what makes each run atomic.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class SortedSet:
    """Members ordered by (score, member), as a Redis ZSET orders them."""

    scores: dict[str, int] = field(default_factory=dict)
    order: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, member: str, score: int) -> None:
        self.remove(member)
        self.scores[member] = score
        bisect.insort(self.order, (score, member))

    def remove(self, member: str) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        del self.order[bisect.bisect_left(self.order, (score, member))]
        return True

    def first(self) -> tuple[str, int] | None:
        """The member with the lowest score, and its score."""
        if not self.order:
            return None
        score, member = self.order[0]
        return member, score

    def up_to(self, maximum: int, limit: int) -> list[str]:
        """At most `limit` members with score <= `maximum`, lowest first."""
        end = bisect.bisect_right(self.order, (maximum, "\U0010ffff"))
        return [member for _, member in self.order[: min(end, limit)]]

    def remove_below(self, bound: int) -> None:
        """Remove every member whose score is < `bound`."""
        end = bisect.bisect_left(self.order, (bound, ""))
        for _, member in self.order[:end]:
            del self.scores[member]
        del self.order[:end]


Value = SortedSet | dict[str, str]


@dataclass(slots=True)
class _Entry:
    value: Value
    expires_at: float | None = None  # monotonic seconds


class MemoryStore:
    """Keys holding sorted sets or hashes, with Redis's expiry semantics."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    # -- keys ------------------------------------------------------------------------

    def _entry(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry

    def exists(self, key: str) -> bool:
        return self._entry(key) is not None

    def pexpire(self, key: str, milliseconds: int) -> bool:
        """Expire `key` after `milliseconds`; False (and nothing) if it does not exist."""
        entry = self._entry(key)
        if entry is None:
            return False
        entry.expires_at = self._clock() + milliseconds / 1000
        return True

    def pttl(self, key: str) -> int:
        """Milliseconds `key` has left: -2 when missing, -1 without a TTL (as Redis)."""
        entry = self._entry(key)
        if entry is None:
            return -2
        if entry.expires_at is None:
            return -1
        return max(0, round((entry.expires_at - self._clock()) * 1000))

    def keys(self) -> Iterator[str]:
        """The keys that exist now."""
        return iter([key for key in list(self._entries) if self._entry(key) is not None])

    def purge_expired(self) -> int:
        """Drop every expired key; returns how many were dropped."""
        now = self._clock()
        expired = [
            key
            for key, entry in self._entries.items()
            if entry.expires_at is not None and entry.expires_at <= now
        ]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def flush(self) -> None:
        """Forget everything (what a restart of this process does)."""
        self._entries.clear()

    def _drop_if_empty(self, key: str, value: Value) -> None:
        if not value:
            self._entries.pop(key, None)

    # -- hashes --------------------------------------------------------------------------

    def _hash(self, key: str) -> dict[str, str] | None:
        entry = self._entry(key)
        if entry is None:
            return None
        if not isinstance(entry.value, dict):
            raise TypeError(f"{key} does not hold a hash")
        return entry.value

    def _writable_hash(self, key: str) -> dict[str, str]:
        fields = self._hash(key)
        if fields is None:
            fields = {}
            self._entries[key] = _Entry(fields)
        return fields

    def hget(self, key: str, name: str) -> str | None:
        fields = self._hash(key)
        return None if fields is None else fields.get(name)

    def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._hash(key) or {})

    def hexists(self, key: str, name: str) -> bool:
        return name in (self._hash(key) or {})

    def hset(self, key: str, mapping: Mapping[str, str | int]) -> None:
        fields = self._writable_hash(key)
        fields.update({name: str(value) for name, value in mapping.items()})

    def hincrby(self, key: str, name: str, amount: int) -> int:
        fields = self._writable_hash(key)
        value = int(fields.get(name, "0")) + amount
        fields[name] = str(value)
        return value

    def hdel(self, key: str, *names: str) -> None:
        fields = self._hash(key)
        if fields is None:
            return
        for name in names:
            fields.pop(name, None)
        self._drop_if_empty(key, fields)

    # -- sorted sets -------------------------------------------------------------------

    def _zset(self, key: str) -> SortedSet | None:
        entry = self._entry(key)
        if entry is None:
            return None
        if not isinstance(entry.value, SortedSet):
            raise TypeError(f"{key} does not hold a sorted set")
        return entry.value

    def zadd(self, key: str, score: int, member: str, *, only_existing: bool = False) -> None:
        """ZADD (with `only_existing`: ZADD XX, which never adds a member)."""
        members = self._zset(key)
        if only_existing and (members is None or member not in members.scores):
            return
        if members is None:
            members = SortedSet()
            self._entries[key] = _Entry(members)
        members.add(member, score)

    def zrem(self, key: str, member: str) -> None:
        members = self._zset(key)
        if members is not None and members.remove(member):
            self._drop_if_empty(key, members)

    def zcard(self, key: str) -> int:
        members = self._zset(key)
        return 0 if members is None else len(members)

    def zscore(self, key: str, member: str) -> int | None:
        members = self._zset(key)
        return None if members is None else members.scores.get(member)

    def zfirst(self, key: str) -> tuple[str, int] | None:
        """ZRANGE key 0 0 WITHSCORES."""
        members = self._zset(key)
        return None if members is None else members.first()

    def zrange(self, key: str) -> list[str]:
        """Every member, lowest score first."""
        members = self._zset(key)
        return [] if members is None else [member for _, member in members.order]

    def zrange_up_to(self, key: str, maximum: int, limit: int) -> list[str]:
        """ZRANGEBYSCORE key -inf maximum LIMIT 0 limit."""
        members = self._zset(key)
        return [] if members is None else members.up_to(maximum, limit)

    def zremrange_below(self, key: str, bound: int) -> None:
        """ZREMRANGEBYSCORE key -inf (bound."""
        members = self._zset(key)
        if members is not None:
            members.remove_below(bound)
            self._drop_if_empty(key, members)
