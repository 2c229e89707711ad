"""RPM and TPM (docs/REFERENCE.md §4.5) on both limiters, with the injectable clock."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.crc import key_slot

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import Admission, AdmissionRequest, Limiter, Refused
from tests.limits.conftest import NOW, Counters, admission


async def _try_admit(limiter: Limiter, request: AdmissionRequest) -> Admission | Refused:
    try:
        return await limiter.admit(request)
    except Refused as refused:
        return refused


async def test_rpm_admits_exactly_the_limit_under_concurrency(
    replicas: list[Limiter], tenant_id: uuid.UUID, counters: Counters
) -> None:
    limits = LimitValues(rpm=10)
    key_id = uuid.uuid4()
    requests = [admission(tenant_id, key_id, tenant=limits) for _ in range(50)]
    results = await asyncio.gather(
        *(_try_admit(replicas[i % 3], request) for i, request in enumerate(requests))
    )

    admitted = [r for r in results if isinstance(r, Admission)]
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(admitted) == 10
    assert {(r.reason, r.retry_after) for r in refused} == {("rpm", 61)}
    assert await counters.zcard(f"nz:lim:{{{tenant_id}}}:t:rpm") == 10


async def test_rpm_window_slides_with_the_oldest_admission(
    limiter: Limiter, tenant_id: uuid.UUID
) -> None:
    limits = LimitValues(rpm=3)
    key_id = uuid.uuid4()
    for offset in (0, 20, 40):
        await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + offset))

    with pytest.raises(Refused) as refused:
        await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + 50))
    # The admission at NOW leaves the window just after NOW + 60.
    assert refused.value.retry_after == 11
    assert refused.value.headers["Retry-After"] == "11"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.headers["x-ratelimit-reset-requests"] == "10.001s"

    # Exactly 60 s after the first admission it still counts; a millisecond later not.
    with pytest.raises(Refused):
        await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + 60))
    admitted = await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + 60.001))
    assert admitted.headers["x-ratelimit-remaining-requests"] == "0"
    # The next slot frees when the admission at NOW + 20 leaves.
    assert admitted.headers["x-ratelimit-reset-requests"] == "20s"


async def test_admission_headers_report_the_most_constrained_subject(
    limiter: Limiter, tenant_id: uuid.UUID
) -> None:
    tenant = LimitValues(rpm=100, tpm=5000)
    key = LimitValues(rpm=2)
    first = await limiter.admit(admission(tenant_id, uuid.uuid4(), tenant=tenant, key=key))

    assert first.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "60.001s",
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "5000",
    }
    assert first.output_cap is None  # no budget: the client's cap is left alone


async def test_key_and_tenant_limits_both_apply(limiter: Limiter, tenant_id: uuid.UUID) -> None:
    tenant = LimitValues(rpm=5)
    own_limit, inheriting = uuid.uuid4(), uuid.uuid4()
    for _ in range(3):
        await limiter.admit(admission(tenant_id, own_limit, tenant=tenant, key=LimitValues(rpm=3)))
    with pytest.raises(Refused) as by_key:
        await limiter.admit(admission(tenant_id, own_limit, tenant=tenant, key=LimitValues(rpm=3)))
    assert (by_key.value.reason, by_key.value.scope) == ("rpm", "key")

    # The second key inherits rpm=5 but shares the tenant's 5 with the first key.
    for _ in range(2):
        await limiter.admit(admission(tenant_id, inheriting, tenant=tenant))
    with pytest.raises(Refused) as by_tenant:
        await limiter.admit(admission(tenant_id, inheriting, tenant=tenant))
    assert (by_tenant.value.reason, by_tenant.value.scope) == ("rpm", "tenant")
    assert "rate limit of the tenant reached: 5 requests per minute" in by_tenant.value.message


async def test_tpm_refuses_while_recorded_tokens_reach_the_limit(
    limiter: Limiter, tenant_id: uuid.UUID
) -> None:
    limits = LimitValues(tpm=100)
    key_id = uuid.uuid4()
    first = await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW))
    await limiter.settle(first.ticket, 20, 40, now=NOW + 1)
    second = await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + 2))
    assert second.headers["x-ratelimit-remaining-tokens"] == "40"
    await limiter.settle(second.ticket, 10, 40, now=NOW + 2)

    with pytest.raises(Refused) as refused:
        await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + 3))
    assert refused.value.reason == "tpm"
    # Below the limit once the 60 tokens of second NOW + 1 have aged out (at NOW + 62).
    assert refused.value.retry_after == 59
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.value.headers["x-ratelimit-limit-tokens"] == "100"

    with pytest.raises(Refused):
        await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + 61.9))
    again = await limiter.admit(admission(tenant_id, key_id, tenant=limits, at=NOW + 62))
    assert again.headers["x-ratelimit-remaining-tokens"] == "50"


async def test_a_refusal_consumes_nothing(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    key_id = uuid.uuid4()
    tenant = LimitValues(rpm=1)
    key = LimitValues(rpm=100, max_concurrent=10, daily_tokens=10_000)
    await limiter.admit(admission(tenant_id, key_id, tenant=tenant, key=key))
    base = f"nz:lim:{{{tenant_id}}}:k:{key_id}"
    before = (
        await counters.zcard(f"{base}:rpm"),
        await counters.zcard(f"{base}:live"),
        await counters.hget(f"{base}:bud:d:20261126", "resv"),
    )

    for _ in range(3):
        with pytest.raises(Refused):
            await limiter.admit(admission(tenant_id, key_id, tenant=tenant, key=key))

    after = (
        await counters.zcard(f"{base}:rpm"),
        await counters.zcard(f"{base}:live"),
        await counters.hget(f"{base}:bud:d:20261126", "resv"),
    )
    assert before == after == (1, 1, "110")


async def test_all_keys_of_a_request_share_one_cluster_slot(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    limits = LimitValues(
        rpm=10, tpm=10, max_concurrent=1, daily_tokens=1, monthly_tokens=1, total_tokens=1
    )
    admitted = await limiter.admit(admission(tenant_id, uuid.uuid4(), tenant=limits, prompt=0))
    keys = [key for plan in admitted.ticket.subjects for key in plan.keys]

    assert len(keys) == 14
    assert {key_slot(key.encode()) for key in keys} == {key_slot(str(tenant_id).encode())}
    assert all(key.startswith(f"nz:lim:{{{tenant_id}}}:") for key in keys)
