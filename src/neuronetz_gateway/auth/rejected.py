"""Keys that failed verification a moment ago (docs/REFERENCE.md §4.3's negative cache).

A client repeating one wrong key is answered 401 from memory for `ttl_seconds`,
without Postgres, Argon2 or a token of the failure budget. Keyed by the key's HMAC
digest (never the key). Bounded: when full, expired entries go; if it is still full,
everything goes (a flood of distinct wrong keys gains nothing from this cache anyway;
the failure budget is what stops it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

TTL_SECONDS = 5.0
MAX_ENTRIES = 10_000


class RejectedKeys:
    """Digests of recently rejected keys (not thread-safe: one event loop)."""

    def __init__(
        self,
        *,
        ttl_seconds: float = TTL_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._until: dict[bytes, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def __contains__(self, digest: bytes) -> bool:
        until = self._until.get(digest)
        return until is not None and until > self._clock()

    def add(self, digest: bytes) -> None:
        now = self._clock()
        if len(self._until) >= self._max:
            self._until = {d: t for d, t in self._until.items() if t > now}
            if len(self._until) >= self._max:
                self._until.clear()
        self._until[digest] = now + self._ttl

    def clear(self) -> None:
        """Forget every rejection (a key may have been created or changed)."""
        self._until.clear()
