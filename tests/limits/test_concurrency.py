"""max_concurrent leases (REFERENCE.md §4.5): released by settle, reclaimed when not refreshed."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import Admission, Limiter, Refused
from tests.limits.conftest import LEASE_SECONDS, NOW, Counters, admission

LIMITS = LimitValues(max_concurrent=2)


async def test_settle_frees_the_slot(limiter: Limiter, tenant_id: uuid.UUID) -> None:
    key_id = uuid.uuid4()
    first = await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS))
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS))

    with pytest.raises(Refused) as refused:
        await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + 1))
    assert (refused.value.reason, refused.value.scope) == ("concurrency", "key")
    # Until the oldest lease expires (admitted at NOW, lease 5 s).
    assert refused.value.retry_after == LEASE_SECONDS - 1
    assert "2 requests in flight" in refused.value.message

    await limiter.settle(first.ticket, 1, 1, now=NOW + 1)
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + 1))


async def test_concurrent_admissions_never_exceed_the_limit(
    replicas: list[Limiter], tenant_id: uuid.UUID, counters: Counters
) -> None:
    key_id = uuid.uuid4()

    async def attempt(index: int) -> bool:
        try:
            await replicas[index % 3].admit(admission(tenant_id, key_id, tenant=LIMITS))
        except Refused:
            return False
        return True

    results = await asyncio.gather(*(attempt(i) for i in range(30)))
    assert sum(results) == 2
    assert await counters.zcard(f"nz:lim:{{{tenant_id}}}:t:live") == 2


async def test_an_unrefreshed_lease_expires_and_its_slot_comes_back(
    limiter: Limiter, tenant_id: uuid.UUID
) -> None:
    """A replica that crashed mid-request never settles: its lease must not leak."""
    key_id = uuid.uuid4()
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS))
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS))

    with pytest.raises(Refused):
        await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + 4.999))
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + LEASE_SECONDS))
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + LEASE_SECONDS))
    with pytest.raises(Refused):
        await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + LEASE_SECONDS))


async def test_refresh_keeps_a_stream_alive(limiter: Limiter, tenant_id: uuid.UUID) -> None:
    key_id = uuid.uuid4()
    stream = await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS))
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS))
    assert stream.ticket.holds_lease
    assert stream.ticket.refresh_interval == pytest.approx(LEASE_SECONDS / 3)

    await limiter.refresh(stream.ticket, now=NOW + 4)  # the stream's lease: until NOW + 9

    # At NOW + 6 only the unrefreshed lease has expired: one slot comes back.
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + 6))
    with pytest.raises(Refused) as refused:
        await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + 6))
    assert refused.value.retry_after == 3  # the refreshed lease, at NOW + 9

    await limiter.settle(stream.ticket, 5, 5, now=NOW + 7)
    await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + 7))


async def test_refresh_does_not_revive_a_reclaimed_lease(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    key_id = uuid.uuid4()
    late = await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS))
    others: list[Admission] = [
        await limiter.admit(admission(tenant_id, key_id, tenant=LIMITS, at=NOW + 6))
        for _ in range(2)
    ]  # the first admission's lease was reclaimed to make room

    await limiter.refresh(late.ticket, now=NOW + 7)

    live = await counters.zrange(f"nz:lim:{{{tenant_id}}}:t:live")
    assert sorted(live) == sorted(a.ticket.admission_id for a in others)
