"""The budget of failed verifications (auth/throttle.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from neuronetz_gateway.auth.throttle import FailureBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def budget(clock: Clock, **overrides: float) -> FailureBudget:
    parameters = {
        "prefix_burst": 3.0,
        "prefix_per_second": 0.5,
        "global_burst": 10.0,
        "global_per_second": 2.0,
    } | overrides
    return FailureBudget(clock=clock, **parameters)


def test_a_prefix_may_fail_its_burst_then_waits_for_the_refill(clock: Clock) -> None:
    failures = budget(clock)
    assert [failures.acquire("nz_aaaaaaaa") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert failures.acquire("nz_aaaaaaaa") == pytest.approx(2.0)  # 1 token at 0.5/s
    clock.now += 1.0
    assert failures.acquire("nz_aaaaaaaa") == pytest.approx(1.0)
    clock.now += 1.0
    assert failures.acquire("nz_aaaaaaaa") == 0.0


def test_refused_attempts_take_nothing(clock: Clock) -> None:
    failures = budget(clock)
    for _ in range(3):
        failures.acquire("nz_aaaaaaaa")
    for _ in range(100):
        assert failures.acquire("nz_aaaaaaaa") > 0
    clock.now += 2.0
    assert failures.acquire("nz_aaaaaaaa") == 0.0


def test_one_prefix_under_attack_leaves_the_others_alone(clock: Clock) -> None:
    failures = budget(clock)
    for _ in range(3):
        failures.acquire("nz_attacked")
    assert failures.acquire("nz_attacked") > 0
    assert failures.acquire("nz_innocent") == 0.0


def test_the_global_budget_bounds_failures_across_prefixes(clock: Clock) -> None:
    failures = budget(clock)
    granted = [failures.acquire(f"nz_{i:08d}") == 0.0 for i in range(25)]
    assert granted.count(True) == 10
    assert failures.acquire("nz_fresh000") == pytest.approx(0.5)  # 1 token at 2/s


def test_a_refund_restores_both_budgets(clock: Clock) -> None:
    failures = budget(clock, global_burst=3.0)
    for _ in range(3):
        assert failures.acquire("nz_aaaaaaaa") == 0.0
        failures.refund("nz_aaaaaaaa")  # the key was right each time
    assert failures.acquire("nz_aaaaaaaa") == 0.0
    assert failures.acquire("nz_bbbbbbbb") == 0.0


def test_refunds_never_exceed_the_burst(clock: Clock) -> None:
    failures = budget(clock)
    failures.acquire("nz_aaaaaaaa")
    for _ in range(10):
        failures.refund("nz_aaaaaaaa")
    assert [failures.acquire("nz_aaaaaaaa") for _ in range(4)][-1] > 0


def fail(failures: FailureBudget, prefix: str, client: str) -> float:
    """One attempt that, when let in, turns out wrong; the wait it was given."""
    wait = failures.acquire(prefix, client)
    if wait == 0:
        failures.failed(client)
    return wait


def test_one_client_spends_only_its_share_of_the_process_budget(clock: Clock) -> None:
    """Half of the burst (8 → 4) and of the rate (2/s → 1/s) per client: one client
    inventing keys leaves the rest of the budget to the others."""
    failures = budget(clock, global_burst=8.0)
    flood = [fail(failures, f"nz_{i:08d}", "203.0.113.5") for i in range(10)]
    assert flood[:4] == [0.0] * 4
    assert flood[4:] == [pytest.approx(1.0)] * 6  # a whole token at 1/s
    granted = [failures.acquire(f"nz_b{i:07d}", f"192.0.2.{i}") == 0.0 for i in range(20)]
    assert granted.count(True) == 8 - 4  # what the process had left


def test_a_clients_right_keys_never_wait_for_its_share(clock: Clock) -> None:
    """A client's share pays for failures only: twenty concurrent new keys of one
    client, all right, are each let in while the process's budget lasts."""
    failures = budget(clock, global_burst=32.0)
    assert [failures.acquire(f"nz_{i:08d}", "192.0.2.1") for i in range(20)] == [0.0] * 20
    for i in range(20):
        failures.refund(f"nz_{i:08d}")
    assert failures.acquire("nz_later000", "192.0.2.1") == 0.0


def test_concurrent_failures_overdraw_a_share_by_at_most_one_burst(clock: Clock) -> None:
    failures = budget(clock, global_burst=40.0)  # a share of 20, refilled 1/s
    for i in range(40):  # all let in before any failed, then all fail
        assert failures.acquire(f"nz_{i:08d}", "203.0.113.5") == 0.0
    for _ in range(40):
        failures.failed("203.0.113.5")
    assert failures.acquire("nz_next0000", "203.0.113.5") == pytest.approx(21.0)


def test_the_addresses_of_one_ipv6_64_are_one_client(clock: Clock) -> None:
    failures = budget(clock, client_share=0.1)  # one failure per client
    assert fail(failures, "nz_aaaaaaaa", "2001:db8:1:2::10") == 0.0
    assert fail(failures, "nz_bbbbbbbb", "2001:db8:1:2:ffff::9") > 0
    assert fail(failures, "nz_cccccccc", "2001:db8:1:3::10") == 0.0
    assert fail(failures, "nz_dddddddd", "::ffff:192.0.2.1") == 0.0
    assert fail(failures, "nz_eeeeeeee", "192.0.2.1") > 0  # the same IPv4 client
