"""The keys this process has verified: principals by prefix, and proofs of Argon2.

A request whose key is here costs no Postgres query and no Argon2 (docs/REFERENCE.md
§4.3). Entries are keyed by display prefix and hold an HMAC digest of the whole key
(`Authenticator` computes it under a per-process pepper), compared in constant time.

Two maps with different lifetimes:

- *entries*: the principal (limits, grants, tenant state) as loaded, fresh for
  `ttl_seconds`; dropped at once when a change names the key or its tenant.
- *proofs*: prefix → (digest, Argon2 hash) of a key that passed Argon2. They survive
  the drops above, so reloading a changed configuration costs a query but never a
  second Argon2 verification (nor a token of the failure budget) for the same key and
  the same stored hash.

The generation guard: a verification reads `generation` before it loads anything and
hands it back to `put`. Every eviction increments it, so an entry loaded before a
revocation or a limit change (which raced with the verification) is not cached; the
next request loads the new state.
"""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from neuronetz_gateway.auth.principal import Principal


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """A verified key as cached: who it is and until when it may be used."""

    digest: bytes
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    principal: Principal | None  # None: the tenant is suspended (403)
    expires_at: float | None  # the key's own expiry, epoch seconds
    fresh_until: float  # monotonic: reload from Postgres after this


class VerifiedKeys:
    """Verified keys and Argon2 proofs (not thread-safe: one event loop)."""

    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl_seconds
        self._clock = clock
        self._entries: dict[str, VerifiedKey] = {}
        self._proofs: dict[str, tuple[bytes, str]] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def generation(self) -> int:
        """Read before loading a key; `put` refuses if an eviction happened since."""
        return self._generation

    def get(self, prefix: str, digest: bytes) -> VerifiedKey | None:
        """The fresh entry of `prefix` if `digest` is its key's digest, else None."""
        entry = self._entries.get(prefix)
        if (
            entry is not None
            and entry.fresh_until > self._clock()
            and hmac.compare_digest(entry.digest, digest)
        ):
            return entry
        return None

    def fresh_until(self) -> float:
        """The `fresh_until` of an entry made now."""
        return self._clock() + self._ttl

    def put(self, prefix: str, entry: VerifiedKey, generation: int) -> bool:
        """Cache `entry` unless something was evicted since `generation` was read."""
        if generation != self._generation:
            return False
        self._entries[prefix] = entry
        return True

    def proven(self, prefix: str, digest: bytes, key_hash: str | None = None) -> bool:
        """True when the key with `digest` passed Argon2 under `prefix` (against the
        stored hash `key_hash`, when given)."""
        proof = self._proofs.get(prefix)
        if proof is None or not hmac.compare_digest(proof[0], digest):
            return False
        return key_hash is None or proof[1] == key_hash

    def remember_proof(self, prefix: str, digest: bytes, key_hash: str) -> None:
        self._proofs[prefix] = (digest, key_hash)

    def evict_prefix(self, prefix: str) -> None:
        """Forget the entry of key `prefix` (revoked or deleted)."""
        self._generation += 1
        self._entries.pop(prefix, None)

    def evict(self, tenant_id: uuid.UUID | None, key_id: uuid.UUID | None) -> None:
        """Forget every entry of the tenant or the key a configuration change names."""
        self._generation += 1
        stale = [
            prefix
            for prefix, entry in self._entries.items()
            if (tenant_id is not None and entry.tenant_id == tenant_id)
            or (key_id is not None and entry.key_id == key_id)
        ]
        for prefix in stale:
            del self._entries[prefix]

    def clear(self) -> None:
        """Forget every entry (the change feed was interrupted); proofs stay."""
        self._generation += 1
        self._entries.clear()
