"""Authentication stage (docs/REFERENCE.md §4.3): `Authorization: Bearer <key>` → `Principal`.

Order of checks, cheapest first: header shape and key checksum (pure CPU); the cache
of verified keys (an HMAC-SHA256 of the key under a per-process random pepper,
compared with `hmac.compare_digest`); the short negative cache of wrong keys; the
in-memory index of existing prefixes; and only then Postgres and Argon2, coalesced so
that a burst of requests with one new key costs one verification.

Revocation and configuration changes arrive through `db.notify` and evict entries at
once (`evict_prefix`, `evict`, `clear`). A generation counter keeps a verification that
raced with an eviction from caching what it loaded before the change.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.auth import store
from neuronetz_gateway.auth.keys import DISPLAY_PREFIX_LENGTH, is_well_formed
from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.auth.throttle import FailureBudget
from neuronetz_gateway.auth.verifier import KeyVerifier, VerifierSaturated
from neuronetz_gateway.db.tables import KeyStatus, Outcome, TenantStatus
from neuronetz_gateway.errors import GatewayError, unauthorized, unavailable

log = structlog.get_logger(__name__)

NEGATIVE_TTL_SECONDS = 5.0
NEGATIVE_CACHE_MAX = 10_000
UNKNOWN_PREFIX_LOOKUPS = 2


def tenant_suspended() -> GatewayError:
    return GatewayError(
        403, "tenant suspended", Outcome.FORBIDDEN, code="tenant_suspended", type="permission_error"
    )


@dataclass(slots=True)
class _Entry:
    digest: bytes
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    principal: Principal | None  # None: the tenant is suspended (403)
    expires_at: float | None  # the key's expiry, epoch seconds
    fresh_until: float  # monotonic


def bearer_token(authorization: bytes | None) -> str | None:
    """The token of a `Bearer` authorization header (not yet checked), or None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer" or not token:
        return None
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        return None


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
        self._ttl = cache_ttl_seconds
        self._mac = hmac.new(secrets.token_bytes(32), digestmod=hashlib.sha256)
        self._entries: dict[str, _Entry] = {}
        self._rejected: dict[bytes, float] = {}
        # prefix -> (digest, key_hash) of a key that passed Argon2: survives cache drops,
        # so reloading configuration never needs Argon2 again for the same key.
        self._verified: dict[str, tuple[bytes, str]] = {}
        self._inflight: dict[bytes, asyncio.Future[_Entry | None]] = {}
        self._prefixes: set[str] | None = None  # None until loaded: then Postgres decides
        self._generation = 0
        self._unknown_lookups = 0
        self.hits = 0
        self.misses = 0

    # -- the stage -----------------------------------------------------------------

    async def authenticate(self, authorization: bytes | None) -> Principal:
        """The principal for the header, or a `GatewayError` (401, 403 or 503)."""
        key = bearer_token(authorization)
        if key is None:
            raise unauthorized()
        prefix = key[:DISPLAY_PREFIX_LENGTH]
        mac = self._mac.copy()  # keyed once: copying beats re-keying on every request
        mac.update(key.encode())
        digest = mac.digest()
        now = time.monotonic()
        entry = self._entries.get(prefix)
        if (
            entry is not None
            and entry.fresh_until > now
            and hmac.compare_digest(entry.digest, digest)
        ):
            # A cached digest belongs to a key that passed every check: the format and
            # checksum need not be computed again.
            self.hits += 1
            return self._principal_of(entry)
        self.misses += 1
        if not is_well_formed(key):
            raise unauthorized()
        rejected_until = self._rejected.get(digest)
        if rejected_until is not None and rejected_until > now:
            raise unauthorized()
        if self._prefixes is not None and prefix not in self._prefixes:
            # Unknown here, but a key created a moment ago may not be indexed yet (its
            # notification races the client's first request): ask Postgres, with at
            # most UNKNOWN_PREFIX_LOOKUPS at once, so a flood of invented keys cannot
            # turn into a flood of queries. Joining a lookup of the same key already
            # under way costs no query: a burst with a brand-new key is all served.
            joining = digest in self._inflight
            if not joining and self._unknown_lookups >= UNKNOWN_PREFIX_LOOKUPS:
                raise unauthorized()
            self._unknown_lookups += 0 if joining else 1
            try:
                resolved = await self._verify_once(key, prefix, digest)
            finally:
                self._unknown_lookups -= 0 if joining else 1
            if resolved is None:
                raise unauthorized()
            self.add_prefix(prefix)
            return self._principal_of(resolved)
        resolved = await self._verify_once(key, prefix, digest)
        if resolved is None:
            raise unauthorized()
        return self._principal_of(resolved)

    @staticmethod
    def _principal_of(entry: _Entry) -> Principal:
        if entry.expires_at is not None and entry.expires_at <= time.time():
            raise unauthorized()
        if entry.principal is None:
            raise tenant_suspended()
        return entry.principal

    async def _verify_once(self, key: str, prefix: str, digest: bytes) -> _Entry | None:
        """Verify `key`, sharing one verification among concurrent identical requests."""
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        charged = self._charge(prefix, digest)
        future: asyncio.Future[_Entry | None] = asyncio.get_running_loop().create_future()
        self._inflight[digest] = future
        try:
            result = await self._verify(key, prefix, digest)
            if charged and result is not None:
                self._failures.refund(prefix)
        except BaseException as error:
            if charged:  # the check did not run to a verdict: not the key's failure
                self._failures.refund(prefix)
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters may be none
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[digest]

    def _charge(self, prefix: str, digest: bytes) -> bool:
        """Take a failure token for a lookup + Argon2 under a known prefix (throttle.py),
        or refuse with 503; False when no token is needed.

        The key this process already verified under the prefix needs none (it skips
        Argon2), and neither does an unknown prefix, whose lookups are bounded apart.
        """
        remembered = self._verified.get(prefix)
        if remembered is not None and remembered[0] == digest:
            return False
        if self._prefixes is not None and prefix not in self._prefixes:
            return False
        wait = self._failures.acquire(prefix)
        if wait > 0:
            raise unavailable(
                "too many failed authentication attempts; retry shortly",
                retry_after=math.ceil(wait),
            )
        return True

    async def _verify(self, key: str, prefix: str, digest: bytes) -> _Entry | None:
        generation = self._generation
        try:
            record = await store.load_key(self._engine, prefix)
        except Exception as error:  # noqa: BLE001 - any database failure: fail closed
            log.warning("auth_lookup_failed", error=type(error).__name__)
            raise unavailable("authentication is temporarily unavailable") from None
        if record is None or record.key_status is not KeyStatus.ACTIVE or _expired(record):
            self._reject(digest)
            return None
        if self._verified.get(prefix) != (digest, record.key_hash):
            try:
                matches = await self._verifier.verify(record.key_hash, key)
            except VerifierSaturated:
                raise unavailable("too many authentication attempts; retry shortly") from None
            if not matches:
                self._reject(digest)
                return None
            self._verified[prefix] = (digest, record.key_hash)
        principal = record.principal
        entry = _Entry(
            digest=digest,
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            principal=principal if record.tenant_status is TenantStatus.ACTIVE else None,
            expires_at=record.expires_at.timestamp() if record.expires_at else None,
            fresh_until=time.monotonic() + self._ttl,
        )
        if generation == self._generation:
            self._entries[prefix] = entry
        return entry

    def _reject(self, digest: bytes) -> None:
        if len(self._rejected) >= NEGATIVE_CACHE_MAX:
            now = time.monotonic()
            self._rejected = {d: t for d, t in self._rejected.items() if t > now}
            if len(self._rejected) >= NEGATIVE_CACHE_MAX:
                self._rejected.clear()
        self._rejected[digest] = time.monotonic() + NEGATIVE_TTL_SECONDS

    # -- cache maintenance (called by the change listener) ------------------------

    @property
    def cached(self) -> int:
        return len(self._entries)

    def set_prefixes(self, prefixes: set[str] | None) -> None:
        """Install the index of existing prefixes (None: consult Postgres for all)."""
        self._prefixes = prefixes

    def add_prefix(self, prefix: str) -> None:
        if self._prefixes is not None:
            self._prefixes.add(prefix)
        self._rejected.clear()

    def evict_prefix(self, prefix: str) -> None:
        """Forget the key `prefix` (revoked or deleted)."""
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
        self._rejected.clear()

    def clear(self) -> None:
        """Forget all configuration (the change feed was interrupted)."""
        self._generation += 1
        self._entries.clear()
        self._rejected.clear()

    async def load_prefix_index(self) -> None:
        """(Re)load the index of existing prefixes from Postgres.

        Merged with what the index already holds: a key learned from a notification
        while the load ran must not be lost, and a stale prefix only costs a lookup.
        """
        loaded = await store.load_prefixes(self._engine)
        self.set_prefixes(loaded | (self._prefixes or set()))

    async def learn_key(self, key_id: uuid.UUID) -> None:
        """A key was inserted: add its prefix to the index."""
        prefix = await store.prefix_of(self._engine, key_id)
        if prefix is not None:
            self.add_prefix(prefix)


def _expired(record: store.KeyRecord) -> bool:
    return record.expires_at is not None and record.expires_at <= datetime.now(UTC)
