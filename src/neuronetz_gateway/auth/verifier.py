"""Argon2id verification off the event loop, with bounded parallelism and queue.

Verification is deliberately expensive (tens of milliseconds of CPU). It runs in a
small thread pool (argon2-cffi releases the GIL), at most `parallelism` at once; when
more than `queue_limit` are already waiting, new ones are refused at once with
`VerifierSaturated` rather than queueing without bound, so a flood of wrong keys can
cost at most `parallelism` cores and never unbounded memory or latency.

A key without a stored hash (its prefix is unknown) is verified against a decoy: a
hash of a random key made at start-up with the configured parameters, which nothing
matches. It costs what verifying a real key costs, so the time of a refusal does not
tell whether the prefix exists.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from neuronetz_gateway.auth.keys import KeyHasher


class VerifierSaturated(Exception):
    """Too many verifications are already waiting; try again shortly."""


class KeyVerifier:
    def __init__(self, decoy: KeyHasher, *, parallelism: int = 1, queue_limit: int = 64) -> None:
        self._executor = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="argon2")
        self._hasher = KeyHasher()  # parameters come from each stored hash
        self._decoy_hash = decoy.hash(secrets.token_urlsafe(32))
        self._queue_limit = queue_limit
        self._pending = 0

    @property
    def pending(self) -> int:
        """Verifications running or waiting right now."""
        return self._pending

    async def verify(self, key_hash: str | None, key: str) -> bool:
        """True when `key` matches the PHC string `key_hash`; None (no stored hash)
        verifies against the decoy and is False."""
        if self._pending >= self._queue_limit:
            raise VerifierSaturated
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            stored = key_hash if key_hash is not None else self._decoy_hash
            matches = await loop.run_in_executor(self._executor, self._hasher.verify, stored, key)
            return matches and key_hash is not None
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
