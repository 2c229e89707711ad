"""Authentication stage (docs/REFERENCE.md §4.3): a presented key → `Principal`.

Cheapest checks first, each in its own module:

1. the verified keys (`verified.py`: an HMAC-SHA256 of the key under a per-process
   random pepper, compared in constant time) — the steady state ends here (the key was
   taken from its header by `credentials.py`);
2. key format and checksum (`keys.py`, pure CPU), and the keys rejected a moment ago
   (`rejected.py`);
3. one verification per distinct key at a time (`single_flight.py`), paid from the
   budget of failed verifications (`throttle.py`; 503 when it is spent);
4. Postgres (`store.py`) and Argon2 (`verifier.py`).

Step 4 does the same work for every key that fails, so the time of a 401 tells nothing
about why: one query, then one Argon2 verification — against the stored hash, or, for
a prefix that does not exist, against a decoy hash with the same parameters. Revoked
and expired keys are verified as well before they are refused.

Revocation and configuration changes arrive through `db.notify` and evict entries at
once (`evict_prefix`, `evict`, `clear`); `VerifiedKeys`' generation guard keeps a
verification that raced with an eviction from caching what it loaded before it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.auth import store
from neuronetz_gateway.auth.keys import DISPLAY_PREFIX_LENGTH, is_well_formed
from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.auth.rejected import RejectedKeys
from neuronetz_gateway.auth.single_flight import SingleFlight
from neuronetz_gateway.auth.throttle import FailureBudget
from neuronetz_gateway.auth.verified import VerifiedKey, VerifiedKeys
from neuronetz_gateway.auth.verifier import KeyVerifier, VerifierSaturated
from neuronetz_gateway.db.tables import TenantStatus
from neuronetz_gateway.errors import GatewayError, unauthorized, unavailable
from neuronetz_gateway.outcome import Outcome

log = structlog.get_logger(__name__)


def tenant_suspended() -> GatewayError:
    return GatewayError(
        403, "tenant suspended", Outcome.FORBIDDEN, code="tenant_suspended", type="permission_error"
    )


class Authenticator:
    def __init__(
        self,
        engine: AsyncEngine,
        verifier: KeyVerifier,
        *,
        cache_ttl_seconds: float,
        failures: FailureBudget | None = None,
    ) -> None:
        self._engine = engine
        self._verifier = verifier
        self._failures = failures or FailureBudget()
        self._mac = hmac.new(secrets.token_bytes(32), digestmod=hashlib.sha256)
        self.verified = VerifiedKeys(cache_ttl_seconds)
        self.rejected = RejectedKeys()
        self._flights: SingleFlight[bytes, VerifiedKey | None] = SingleFlight()
        self.hits = 0
        self.misses = 0

    async def authenticate(self, key: str, client: str | None = None) -> Principal:
        """The principal for a presented key (`credentials.presented_key`), or a
        `GatewayError` (401, 403 or 503); `client` is the caller's address, whose share
        of the failure budget a verification is paid from."""
        prefix = key[:DISPLAY_PREFIX_LENGTH]
        mac = self._mac.copy()  # keyed once: copying beats re-keying on every request
        mac.update(key.encode())
        digest = mac.digest()
        entry = self.verified.get(prefix, digest)
        if entry is not None:
            # A cached digest belongs to a key that passed every check: the format and
            # checksum need not be computed again.
            self.hits += 1
            return _principal_of(entry)
        self.misses += 1
        if not is_well_formed(key) or digest in self.rejected:
            raise unauthorized()
        entry = await self._flights.run(digest, lambda: self._verify(key, prefix, digest, client))
        if entry is None:
            raise unauthorized()
        return _principal_of(entry)

    async def _verify(
        self, key: str, prefix: str, digest: bytes, client: str | None
    ) -> VerifiedKey | None:
        """Verify `key` against Postgres and Argon2, paid from the failure budget.

        The prefix's and the process's tokens are taken before any work (so concurrent
        attempts cannot overrun them) and given back when the key is right or the check
        could not run; the client's share is charged only once the key has failed.
        """
        charged = self._charge(prefix, digest, client)
        try:
            entry = await self._check(key, prefix, digest)
        except BaseException:
            if charged:  # no verdict: not the key's failure
                self._failures.refund(prefix)
            raise
        if entry is None:
            self.rejected.add(digest)
            if charged:
                self._failures.failed(client)
        elif charged:
            self._failures.refund(prefix)
        return entry

    def _charge(self, prefix: str, digest: bytes, client: str | None) -> bool:
        """Take a token of the failure budget, or refuse with 503; False when none is
        needed (this process verified this very key before: it skips Argon2)."""
        if self.verified.proven(prefix, digest):
            return False
        wait = self._failures.acquire(prefix, client)
        if wait > 0:
            raise unavailable(
                "too many failed authentication attempts; retry shortly",
                retry_after=math.ceil(wait),
            )
        return True

    async def _check(self, key: str, prefix: str, digest: bytes) -> VerifiedKey | None:
        generation = self.verified.generation
        try:
            record = await store.find_key(self._engine, prefix)
        except Exception as error:  # noqa: BLE001 - any database failure: fail closed
            log.warning("auth_lookup_failed", error=type(error).__name__)
            raise unavailable("authentication is temporarily unavailable") from None
        key_hash = record.key_hash if record is not None else None
        if key_hash is None or not self.verified.proven(prefix, digest, key_hash):
            try:
                matches = await self._verifier.verify(key_hash, key)
            except VerifierSaturated:
                raise unavailable("too many authentication attempts; retry shortly") from None
            if not matches:
                return None
        if record is None or not record.usable_at(datetime.now(UTC)):
            return None
        self.verified.remember_proof(prefix, digest, record.key_hash)
        principal = await store.load_principal(self._engine, record)
        entry = VerifiedKey(
            digest=digest,
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            principal=principal if record.tenant_status is TenantStatus.ACTIVE else None,
            expires_at=record.expires_at.timestamp() if record.expires_at else None,
            fresh_until=self.verified.fresh_until(),
        )
        self.verified.put(prefix, entry, generation)
        return entry

    # -- cache maintenance (called by the change listener) ------------------------

    @property
    def cached(self) -> int:
        return len(self.verified)

    def evict_prefix(self, prefix: str) -> None:
        """Forget the key `prefix` (revoked or deleted)."""
        self.verified.evict_prefix(prefix)

    def evict(self, tenant_id: uuid.UUID | None, key_id: uuid.UUID | None) -> None:
        """Forget what a configuration change names; a new key may have been created,
        so the keys rejected a moment ago are forgotten as well."""
        self.verified.evict(tenant_id, key_id)
        self.rejected.clear()

    def clear(self) -> None:
        """Forget all configuration (the change feed was interrupted)."""
        self.verified.clear()
        self.rejected.clear()


def _principal_of(entry: VerifiedKey) -> Principal:
    if entry.expires_at is not None and entry.expires_at <= time.time():
        raise unauthorized()
    if entry.principal is None:
        raise tenant_suspended()
    return entry.principal
