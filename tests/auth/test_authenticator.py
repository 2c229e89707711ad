"""The authentication stage (auth/authenticator.py) against a real Postgres database.

The parts are tested alone next to this file; here they work together: what a key
costs (the failure budget is the visible meter: 503 once it is spent), what is cached,
and the race between a verification and a revocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin.keys import revoke_key
from neuronetz_gateway.admin.tenants import set_tenant_status
from neuronetz_gateway.auth.authenticator import Authenticator
from neuronetz_gateway.auth.keys import checksum, generate_key
from neuronetz_gateway.auth.throttle import FailureBudget
from neuronetz_gateway.auth.verifier import KeyVerifier
from neuronetz_gateway.db.engine import create_engine
from neuronetz_gateway.db.tables import ApiKey, TenantStatus
from neuronetz_gateway.errors import GatewayError
from tests.support.factories import FAST_HASHER, KeyFixture, make_key, make_tenant

# No refill within a test: every token taken is visible.
NO_REFILL = 1e-9


class GatedVerifier(KeyVerifier):
    """A verifier that holds each verification until the test releases it."""

    def __init__(self) -> None:
        super().__init__(FAST_HASHER)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def verify(self, key_hash: str | None, key: str) -> bool:
        self.entered.set()
        await self.release.wait()
        return await super().verify(key_hash, key)


def budget(burst: float) -> FailureBudget:
    return FailureBudget(
        prefix_burst=burst,
        prefix_per_second=NO_REFILL,
        global_burst=burst,
        global_per_second=NO_REFILL,
    )


@pytest.fixture
async def verifier() -> AsyncIterator[KeyVerifier]:
    verifier = KeyVerifier(FAST_HASHER)
    yield verifier
    verifier.close()


def authenticator(
    engine: AsyncEngine, verifier: KeyVerifier, failures: FailureBudget | None = None
) -> Authenticator:
    return Authenticator(engine, verifier, cache_ttl_seconds=60, failures=failures)


@pytest.fixture
async def key(session: AsyncSession) -> KeyFixture:
    tenant = await make_tenant(session)
    return await make_key(session, tenant.name)


def wrong_secret(secret: str, position: int = 11) -> str:
    body = secret[:position] + ("A" if secret[position] != "A" else "B") + secret[position + 1 : 43]
    return body + checksum(body)


async def status_of(auth: Authenticator, secret: str) -> int:
    try:
        await auth.authenticate(secret)
    except GatewayError as refusal:
        return refusal.status
    return 200


async def test_a_right_key_is_verified_once_then_served_from_memory(
    engine: AsyncEngine, verifier: KeyVerifier, key: KeyFixture, session: AsyncSession
) -> None:
    auth = authenticator(engine, verifier)
    principal = await auth.authenticate(key.secret)
    assert (principal.key_id, principal.tenant_id) == (key.key_id, key.tenant_id)
    await revoke_key(session, key.prefix)  # no notification reaches this authenticator
    assert await auth.authenticate(key.secret) == principal
    assert (auth.hits, auth.misses) == (1, 1)
    auth.evict_prefix(key.prefix)  # the notification
    assert await status_of(auth, key.secret) == 401


async def test_every_failing_key_pays_from_one_budget(
    engine: AsyncEngine, verifier: KeyVerifier, key: KeyFixture, session: AsyncSession
) -> None:
    """Unknown prefix, wrong secret, revoked key: each costs a token, and with none
    left the next is refused with 503 before any lookup."""
    revoked = await make_key(session, key.tenant_name)
    await revoke_key(session, revoked.prefix)
    auth = authenticator(engine, verifier, budget(3))
    assert await status_of(auth, generate_key().secret) == 401
    assert await status_of(auth, wrong_secret(key.secret)) == 401
    assert await status_of(auth, revoked.secret) == 401
    with pytest.raises(GatewayError) as refused:
        await auth.authenticate(generate_key().secret)
    assert refused.value.status == 503
    assert int(refused.value.headers["retry-after"]) >= 1


async def test_a_right_key_gives_its_token_back(
    engine: AsyncEngine, verifier: KeyVerifier, key: KeyFixture, session: AsyncSession
) -> None:
    other = await make_key(session, key.tenant_name)
    auth = authenticator(engine, verifier, budget(1))
    assert await status_of(auth, key.secret) == 200
    assert await status_of(auth, other.secret) == 200
    assert await status_of(auth, generate_key().secret) == 401


async def test_a_repeated_wrong_key_is_refused_from_memory(
    engine: AsyncEngine, verifier: KeyVerifier, key: KeyFixture
) -> None:
    auth = authenticator(engine, verifier, budget(1))
    wrong = wrong_secret(key.secret)
    assert [await status_of(auth, wrong) for _ in range(5)] == [401] * 5
    auth.evict(key.tenant_id, None)  # a configuration change forgets rejections
    assert await status_of(auth, wrong) == 503


async def test_a_burst_with_one_new_key_costs_one_verification(
    engine: AsyncEngine, verifier: KeyVerifier, key: KeyFixture
) -> None:
    auth = authenticator(engine, verifier, budget(1))
    wrong = wrong_secret(key.secret)
    statuses = await asyncio.gather(*(status_of(auth, wrong) for _ in range(20)))
    assert statuses == [401] * 20  # one token: a second verification would be a 503


async def test_a_verification_that_races_a_revocation_is_not_cached(
    engine: AsyncEngine, key: KeyFixture, session: AsyncSession
) -> None:
    verifier = GatedVerifier()
    auth = authenticator(engine, verifier)
    try:
        racing = asyncio.create_task(auth.authenticate(key.secret))
        await verifier.entered.wait()  # the key row was read while the key was active
        await revoke_key(session, key.prefix)
        auth.evict_prefix(key.prefix)  # the revocation's notification
        verifier.release.set()
        assert (await racing).key_id == key.key_id  # admitted as it was when it arrived
        assert await status_of(auth, key.secret) == 401  # but not cached as active
    finally:
        verifier.close()


async def test_without_the_race_the_key_is_cached(
    engine: AsyncEngine, key: KeyFixture, session: AsyncSession
) -> None:
    """The counterpart of the race test: the same steps without the eviction cache the
    key, so the 401 there is the guard's doing."""
    verifier = GatedVerifier()
    auth = authenticator(engine, verifier)
    try:
        racing = asyncio.create_task(auth.authenticate(key.secret))
        await verifier.entered.wait()
        await revoke_key(session, key.prefix)
        verifier.release.set()
        await racing
        assert await status_of(auth, key.secret) == 200
    finally:
        verifier.close()


async def test_a_database_failure_is_503_and_costs_no_budget(
    engine: AsyncEngine, verifier: KeyVerifier, key: KeyFixture
) -> None:
    failures = budget(1)
    unreachable = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none")
    try:
        down = authenticator(unreachable, verifier, failures)
        with pytest.raises(GatewayError) as refused:
            await down.authenticate(key.secret)
        assert refused.value.status == 503
    finally:
        await unreachable.dispose()
    assert await status_of(authenticator(engine, verifier, failures), generate_key().secret) == 401


async def test_suspended_tenants_get_403_and_expired_keys_401(
    engine: AsyncEngine, verifier: KeyVerifier, key: KeyFixture, session: AsyncSession
) -> None:
    expiring = await make_key(session, key.tenant_name, expires_in=timedelta(hours=1))
    auth = authenticator(engine, verifier)
    assert await status_of(auth, expiring.secret) == 200
    await session.execute(
        sa.update(ApiKey)
        .where(ApiKey.id == expiring.key_id)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await session.commit()
    auth.evict(None, expiring.key_id)
    assert await status_of(auth, expiring.secret) == 401
    await set_tenant_status(session, key.tenant_name, TenantStatus.SUSPENDED)
    auth.evict(key.tenant_id, None)
    assert await status_of(auth, key.secret) == 403
