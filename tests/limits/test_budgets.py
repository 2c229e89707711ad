"""Token budgets (docs/REFERENCE.md §4.6): reservation, output cap, refusal, the overshoot bound."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import pytest

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import Limiter, Refused, estimate_prompt_tokens, script_limiter
from tests.limits.conftest import DEFAULT_MAX_OUTPUT, NOW, Counters, admission, used_and_reserved


def counter(tenant_id: uuid.UUID, key_id: uuid.UUID | None, suffix: str) -> str:
    subject = "t" if key_id is None else f"k:{key_id}"
    return f"nz:lim:{{{tenant_id}}}:{subject}:bud:{suffix}"


def test_prompt_estimate_is_bytes_over_three_rounded_up() -> None:
    assert [estimate_prompt_tokens(n) for n in (0, 1, 3, 4, 3000)] == [0, 1, 1, 2, 1000]


async def test_output_cap_follows_client_cap_default_and_headroom(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    key_id = uuid.uuid4()
    budget = LimitValues(daily_tokens=1000)

    with_client_cap = await limiter.admit(admission(tenant_id, key_id, tenant=budget, cap=50))
    assert with_client_cap.output_cap == 50
    await limiter.settle(with_client_cap.ticket, 10, 50)
    without = await limiter.admit(admission(tenant_id, key_id, tenant=budget))
    assert without.output_cap == DEFAULT_MAX_OUTPUT
    assert without.ticket.reserved_tokens == 10 + DEFAULT_MAX_OUTPUT
    await limiter.settle(without.ticket, 10, 820)  # used: 60 + 830 = 890

    # Headroom 110 minus the prompt estimate 10: 100 ... and 60 with a 50-token prompt.
    near_the_end = await limiter.admit(admission(tenant_id, key_id, tenant=budget, prompt=50))
    assert near_the_end.output_cap == 60
    assert await used_and_reserved(counters, counter(tenant_id, None, "d:20261126")) == (890, 110)


async def test_in_flight_reservations_block_without_exhausting(
    limiter: Limiter, tenant_id: uuid.UUID
) -> None:
    key_id = uuid.uuid4()
    budget = LimitValues(daily_tokens=200)
    first = await limiter.admit(admission(tenant_id, key_id, tenant=budget))  # reserves 110
    second = await limiter.admit(admission(tenant_id, key_id, tenant=budget))
    assert second.output_cap == 80  # 200 - 110 - 10

    with pytest.raises(Refused) as refused:
        await limiter.admit(admission(tenant_id, key_id, tenant=budget))
    assert (refused.value.reason, refused.value.budget_period) == ("budget", "daily")
    assert refused.value.retry_after == 1
    assert "fully reserved by requests in flight" in refused.value.message

    await limiter.settle(first.ticket, 10, 5)  # gives back 95 of its 110
    third = await limiter.admit(admission(tenant_id, key_id, tenant=budget))
    assert third.output_cap == 85  # 200 - 15 - 90 - 10
    await limiter.settle(second.ticket, 0, 0)


async def test_exhausted_daily_budget_names_itself_and_when_it_resets(
    limiter: Limiter, tenant_id: uuid.UUID
) -> None:
    key_id = uuid.uuid4()
    budget = LimitValues(daily_tokens=100)
    spent = await limiter.admit(admission(tenant_id, key_id, key=budget))
    assert spent.output_cap == 90
    await limiter.settle(spent.ticket, 10, 90)

    with pytest.raises(Refused) as refused:
        await limiter.admit(admission(tenant_id, key_id, key=budget))
    error = refused.value
    assert (error.reason, error.scope, error.budget_period) == ("budget", "key", "daily")
    assert error.resets_at == datetime(2026, 11, 27, tzinfo=UTC)
    assert error.message == (
        "daily token budget of the key exhausted; resets at 2026-11-27T00:00:00Z"
    )
    assert error.retry_after == 12 * 3600  # NOW is noon
    assert error.headers == {"Retry-After": str(12 * 3600)}

    # The next UTC day has a fresh budget.
    tomorrow = await limiter.admit(admission(tenant_id, key_id, key=budget, at=NOW + 12 * 3600))
    assert tomorrow.output_cap == 90


async def test_monthly_and_total_budget_refusals(limiter: Limiter, tenant_id: uuid.UUID) -> None:
    monthly = LimitValues(monthly_tokens=20)
    with pytest.raises(Refused) as by_month:
        await limiter.admit(admission(tenant_id, uuid.uuid4(), tenant=monthly, prompt=20))
    assert by_month.value.scope == "key"  # the key inherits the tenant's budget
    assert by_month.value.message == (
        "monthly token budget of the key exhausted; resets at 2026-12-01T00:00:00Z"
    )
    assert by_month.value.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert by_month.value.retry_after == (4 * 24 + 12) * 3600

    total = LimitValues(total_tokens=20)
    with pytest.raises(Refused) as by_total:
        await limiter.admit(
            admission(tenant_id, uuid.uuid4(), tenant=total, key=LimitValues(rpm=5), prompt=20)
        )
    error = by_total.value
    assert (error.scope, error.budget_period, error.resets_at) == ("key", "total", None)
    assert error.message == "total token budget of the key exhausted; it does not reset"
    assert error.retry_after == 86400
    assert "Retry-After" not in error.headers  # a total budget never resets


async def test_tenant_budget_is_shared_by_its_keys(limiter: Limiter, tenant_id: uuid.UUID) -> None:
    tenant = LimitValues(daily_tokens=300)
    generous = LimitValues(daily_tokens=1_000_000)
    first, second = uuid.uuid4(), uuid.uuid4()
    spent = await limiter.admit(admission(tenant_id, first, tenant=tenant, key=generous))
    await limiter.settle(spent.ticket, 10, 250)

    with pytest.raises(Refused) as refused:
        await limiter.admit(admission(tenant_id, second, tenant=tenant, key=generous, prompt=40))
    assert (refused.value.scope, refused.value.budget_period) == ("tenant", "daily")
    assert refused.value.message.startswith("daily token budget of the tenant exhausted")


async def test_embeddings_reserve_only_the_prompt_estimate(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    budget = LimitValues(total_tokens=100)
    key_id = uuid.uuid4()
    embedded = await limiter.admit(
        admission(tenant_id, key_id, tenant=budget, prompt=100, output=False)
    )
    assert embedded.output_cap is None
    assert await used_and_reserved(counters, counter(tenant_id, None, "total")) == (0, 100)
    await limiter.settle(embedded.ticket, 97, 0)
    assert await used_and_reserved(counters, counter(tenant_id, None, "total")) == (97, 0)


async def test_concurrent_requests_never_overshoot_beyond_the_estimate_error(
    replicas: list[Limiter], tenant_id: uuid.UUID, counters: Counters
) -> None:
    """docs/LIMITS.md, budget bound: recorded usage <= budget + sum over admitted requests
    of (real prompt tokens - prompt estimate)+, when upstream honours the output cap."""
    budget = LimitValues(daily_tokens=1000)
    key_id = uuid.uuid4()
    rng = random.Random(7)
    settled_total = 0
    estimate_error = 0
    admitted = 0

    refusals: set[str] = set()

    async def one_request(index: int) -> None:
        nonlocal settled_total, estimate_error, admitted
        estimate = rng.randint(1, 40)
        real_prompt = estimate + rng.randint(-5, 5)  # bytes/3 is only an estimate
        try:
            granted = await replicas[index % 3].admit(
                admission(tenant_id, key_id, tenant=budget, prompt=estimate)
            )
        except Refused as refused:
            refusals.add(refused.reason)
            return
        assert granted.output_cap is not None
        admitted += 1
        await asyncio.sleep(0)  # let other requests in while this one is in flight
        completion = rng.randint(0, granted.output_cap)
        await replicas[index % 3].settle(granted.ticket, max(0, real_prompt), completion)
        settled_total += max(0, real_prompt) + completion
        estimate_error += max(0, real_prompt - estimate)

    for _ in range(4):  # rounds of 50 concurrent requests until the budget is spent
        await asyncio.gather(*(one_request(i) for i in range(50)))

    assert admitted > 10
    assert refusals == {"budget"}
    used, reserved = await used_and_reserved(counters, counter(tenant_id, None, "d:20261126"))
    assert (used, reserved) == (settled_total, 0)
    assert used <= 1000 + estimate_error
    assert used >= 1000 - 40  # the budget was actually spent, not refused early


async def test_worst_case_spending_stays_within_the_budget(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    """Exact estimates and every request using its whole output cap: never above."""
    budget = LimitValues(daily_tokens=1000)
    key_id = uuid.uuid4()
    granted = []
    for _ in range(50):
        try:
            granted.append(await limiter.admit(admission(tenant_id, key_id, tenant=budget)))
        except Refused:
            break
    await asyncio.gather(*(limiter.settle(g.ticket, 10, g.output_cap or 0) for g in granted))
    used, reserved = await used_and_reserved(counters, counter(tenant_id, None, "d:20261126"))
    # Refused only once less than prompt estimate + 1 output token was left.
    assert reserved == 0
    assert 1000 - 11 < used <= 1000


async def test_an_abandoned_reservation_is_reclaimed_with_its_lease(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    """A replica that crashes mid-request leaks neither tokens nor the lease."""
    budget = LimitValues(total_tokens=1000)
    key_id = uuid.uuid4()
    await limiter.admit(admission(tenant_id, key_id, tenant=budget))  # never settled
    assert await used_and_reserved(counters, counter(tenant_id, None, "total")) == (0, 110)

    later = await limiter.admit(admission(tenant_id, key_id, tenant=budget, at=NOW + 10))
    assert await used_and_reserved(counters, counter(tenant_id, None, "total")) == (0, 110)
    await limiter.settle(later.ticket, 10, 20, now=NOW + 11)
    assert await used_and_reserved(counters, counter(tenant_id, None, "total")) == (30, 0)


async def test_settling_twice_counts_once(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters
) -> None:
    budget = LimitValues(daily_tokens=1000)
    granted = await limiter.admit(admission(tenant_id, uuid.uuid4(), tenant=budget))
    await limiter.settle(granted.ticket, 10, 10)
    await limiter.settle(granted.ticket, 10, 10)
    assert await used_and_reserved(counters, counter(tenant_id, None, "d:20261126")) == (20, 0)


async def test_a_resent_admission_reserves_only_once(
    limiter: Limiter, tenant_id: uuid.UUID, counters: Counters, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that re-sends a command whose reply was lost runs the script twice for
    one admission id. The second run must not reserve again."""
    budget = LimitValues(total_tokens=1000)
    key_id, admission_id = uuid.uuid4(), uuid.uuid4().hex
    monkeypatch.setattr(script_limiter, "new_admission_id", lambda: admission_id)

    first = await limiter.admit(admission(tenant_id, key_id, tenant=budget))
    resent = await limiter.admit(admission(tenant_id, key_id, tenant=budget))

    assert first.ticket.admission_id == resent.ticket.admission_id
    assert await used_and_reserved(counters, counter(tenant_id, None, "total")) == (0, 110)
    await limiter.settle(resent.ticket, 10, 10)
    assert await used_and_reserved(counters, counter(tenant_id, None, "total")) == (20, 0)
