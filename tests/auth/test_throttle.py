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
