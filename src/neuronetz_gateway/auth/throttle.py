"""A budget of failed key verifications, per key prefix and for the whole process.

docs/REFERENCE.md §4.3 caches wrong keys negatively, which stops a client repeating one wrong key.
It does nothing against a flood of *different* wrong keys under a real key's prefix:
each one costs a Postgres lookup and an Argon2 verification (~20 ms of CPU), and a few
hundred a second take a core from the traffic the gateway exists to serve.

So failures are budgeted in token buckets: each prefix may fail `prefix_burst` times,
refilled at `prefix_per_second`, and the process as a whole `global_burst` times,
refilled at `global_per_second`. A verification that needs Postgres and Argon2 takes a
token from both buckets before it starts (so a burst of concurrent attempts cannot
overrun the budget) and gives it back when the key turns out right; when either bucket
is empty the request is refused with 503 and a `Retry-After`, never 401, because
whether the key is right is exactly what was not checked. A key already in the verified
cache never reaches this budget at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

PREFIX_BURST = 5.0
PREFIX_PER_SECOND = 0.5
GLOBAL_BURST = 32.0
GLOBAL_PER_SECOND = 2.0  # ~5 % of one core at the default Argon2 parameters
MAX_TRACKED_PREFIXES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class FailureBudget:
    """Token buckets of verification failures (not thread-safe: one event loop)."""

    def __init__(
        self,
        *,
        prefix_burst: float = PREFIX_BURST,
        prefix_per_second: float = PREFIX_PER_SECOND,
        global_burst: float = GLOBAL_BURST,
        global_per_second: float = GLOBAL_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prefix_burst = prefix_burst
        self._prefix_rate = prefix_per_second
        self._global_burst = global_burst
        self._global_rate = global_per_second
        self._clock = clock
        self._global = _Bucket(global_burst, clock())
        self._prefixes: dict[str, _Bucket] = {}

    def acquire(self, prefix: str) -> float:
        """Take a token from the prefix's and the global budget and return 0, or take
        nothing and return the seconds until both hold one."""
        now = self._clock()
        shared = self._refill(self._global, self._global_burst, self._global_rate, now)
        own = self._prefixes.get(prefix)
        if own is None:
            if len(self._prefixes) >= MAX_TRACKED_PREFIXES:
                self._forget_recovered(now)
            own = self._prefixes[prefix] = _Bucket(self._prefix_burst, now)
        self._refill(own, self._prefix_burst, self._prefix_rate, now)
        wait = max(_wait(shared, self._global_rate), _wait(own, self._prefix_rate))
        if wait > 0:
            return wait
        shared.tokens -= 1
        own.tokens -= 1
        return 0.0

    def refund(self, prefix: str) -> None:
        """Give back the tokens of an attempt that did not fail (the key was right, or
        the check could not run)."""
        self._global.tokens = min(self._global_burst, self._global.tokens + 1)
        own = self._prefixes.get(prefix)
        if own is not None:
            own.tokens = min(self._prefix_burst, own.tokens + 1)

    @staticmethod
    def _refill(bucket: _Bucket, burst: float, rate: float, now: float) -> _Bucket:
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    def _forget_recovered(self, now: float) -> None:
        """Drop the buckets that have refilled completely (they hold no state)."""
        self._prefixes = {
            prefix: bucket
            for prefix, bucket in self._prefixes.items()
            if self._refill(bucket, self._prefix_burst, self._prefix_rate, now).tokens
            < self._prefix_burst
        }
        if len(self._prefixes) >= MAX_TRACKED_PREFIXES:
            self._prefixes.clear()


def _wait(bucket: _Bucket, rate: float) -> float:
    """Seconds until `bucket` holds one whole token (0 when it does)."""
    if bucket.tokens >= 1:
        return 0.0
    return (1 - bucket.tokens) / rate if rate > 0 else math.inf
