"""A budget of failed key verifications, per key prefix, per client and for the process.

docs/REFERENCE.md §4.3 caches wrong keys negatively, which stops a client repeating one wrong key.
It does nothing against a flood of *different* wrong keys under a real key's prefix:
each one costs a Postgres lookup and an Argon2 verification (~20 ms of CPU), and a few
hundred a second take a core from the traffic the gateway exists to serve.

So failures are budgeted in token buckets: each prefix may fail `prefix_burst` times,
refilled at `prefix_per_second`; the process as a whole `global_burst` times, refilled
at `global_per_second`; and each client address half of that (`CLIENT_SHARE`), so that
one client flooding invented keys cannot spend all of it and leave every key this
process has not verified yet refused. A verification that needs Postgres and Argon2
takes a token from the prefix's and the process's bucket before it starts (so a burst
of concurrent attempts cannot overrun the budget) and gives it back when the key turns
out right; a client's share is only looked at before and charged after a failure, so
that one client's many right keys (a service holding its customers' keys, a restart)
never wait for each other. When a bucket is empty the request is refused with 503 and a
`Retry-After`, never 401, because whether the key is right is exactly what was not
checked. None of the buckets depends on whether a prefix exists, so a refusal tells
nothing about that either. A key already in the verified cache never reaches this
budget at all.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

PREFIX_BURST = 5.0
PREFIX_PER_SECOND = 0.5
GLOBAL_BURST = 32.0
GLOBAL_PER_SECOND = 2.0  # ~5 % of one core at the default Argon2 parameters
CLIENT_SHARE = 0.5  # of the process's burst and rate, for the failures of each client
MAX_TRACKED = 10_000  # prefixes, and client addresses, remembered at once
_PROCESS = ""  # the name of the process's one bucket


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class _Buckets:
    """One token bucket per name (prefix or client), created full on first use; the
    ones that have refilled completely are forgotten when there are too many."""

    def __init__(self, burst: float, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self._buckets: dict[str, _Bucket] = {}

    def get(self, name: str, now: float) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_recovered(now)
            bucket = self._buckets[name] = _Bucket(self.burst, now)
        return self.refill(bucket, now)

    def wait_for(self, name: str, now: float) -> float:
        """`wait` for `name`'s bucket without creating it (none is a full one)."""
        bucket = self._buckets.get(name)
        return 0.0 if bucket is None else self.wait(self.refill(bucket, now))

    def refund(self, name: str) -> None:
        bucket = self._buckets.get(name)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + 1)

    def refill(self, bucket: _Bucket, now: float) -> _Bucket:
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def wait(self, bucket: _Bucket) -> float:
        """Seconds until `bucket` holds one whole token (0 when it does)."""
        if bucket.tokens >= 1:
            return 0.0
        return (1 - bucket.tokens) / self.rate if self.rate > 0 else math.inf

    def _forget_recovered(self, now: float) -> None:
        self._buckets = {
            name: bucket
            for name, bucket in self._buckets.items()
            if self.refill(bucket, now).tokens < self.burst
        }
        if len(self._buckets) >= MAX_TRACKED:
            self._buckets.clear()


class FailureBudget:
    """Token buckets of verification failures (not thread-safe: one event loop)."""

    def __init__(
        self,
        *,
        prefix_burst: float = PREFIX_BURST,
        prefix_per_second: float = PREFIX_PER_SECOND,
        global_burst: float = GLOBAL_BURST,
        global_per_second: float = GLOBAL_PER_SECOND,
        client_share: float = CLIENT_SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._global = _Buckets(global_burst, global_per_second)  # one bucket, _PROCESS
        self._prefixes = _Buckets(prefix_burst, prefix_per_second)
        self._clients = _Buckets(
            max(1.0, global_burst * client_share), global_per_second * client_share
        )

    def acquire(self, prefix: str, client: str | None = None) -> float:
        """Take a token from the prefix's and the process's budget and return 0, or take
        nothing and return the seconds until both hold one and the client's share (when
        its address is known) is not spent."""
        now = self._clock()
        shared = self._global.get(_PROCESS, now)
        own = self._prefixes.get(prefix, now)
        waits = [self._global.wait(shared), self._prefixes.wait(own)]
        if client is not None:
            # Looked at, not taken (nor made: a flood from many addresses would fill the
            # table with full buckets): a client pays for its failures only (`failed`),
            # so that its right keys never wait for one another.
            waits.append(self._clients.wait_for(client_of(client), now))
        wait = max(waits)
        if wait > 0:
            return wait
        shared.tokens -= 1
        own.tokens -= 1
        return 0.0

    def refund(self, prefix: str) -> None:
        """Give back the tokens of an attempt that did not fail (the key was right, or
        the check could not run)."""
        self._global.refund(_PROCESS)
        self._prefixes.refund(prefix)

    def failed(self, client: str | None) -> None:
        """Charge a failed verification to its client's share. Concurrent attempts may
        overdraw it (each was let in while it held a token); the debt stops at one
        burst, so what a burst of failures costs a client is bounded."""
        if client is None:
            return
        bucket = self._clients.get(client_of(client), self._clock())
        bucket.tokens = max(-self._clients.burst, bucket.tokens - 1)


def client_of(address: str) -> str:
    """The client an address belongs to: an IPv4 address, or the /64 of an IPv6 one
    (one host gets a whole /64 and could otherwise take a fresh share per address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)
