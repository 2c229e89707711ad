"""`UpstreamPool`: choosing a server, ejection and back-off (with a clock we move)."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from prometheus_client import REGISTRY

from neuronetz_gateway.proxy.upstreams import (
    CONNECT,
    STATUS,
    STREAM,
    TIMEOUT,
    Upstream,
    UpstreamPool,
    host_port,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def urls(count: int = 3) -> list[str]:
    """Server URLs unique to one test: metrics are process-wide."""
    host = f"h{uuid.uuid4().hex[:8]}"
    return [f"http://{host}-{index}:11434" for index in range(count)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pool(clock: Clock) -> UpstreamPool:
    return UpstreamPool(urls(), clock=clock)


def metric(name: str, upstream: Upstream, **extra: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"upstream": upstream.label, **extra})


def test_host_port_is_the_label_without_scheme_credentials_or_path() -> None:
    assert host_port("http://10.0.0.7:11434") == "10.0.0.7:11434"
    assert host_port("https://ollama.internal") == "ollama.internal:443"
    assert host_port("http://ollama") == "ollama:80"
    assert host_port("http://[::1]:11434") == "[::1]:11434"
    assert host_port("http://user:secret@gpu-1:8000/base") == "gpu-1:8000"


def test_a_model_goes_to_a_server_that_has_it(pool: UpstreamPool) -> None:
    a, b, c = pool.upstreams
    assert pool.pick({b.base_url}) is b
    assert {pool.pick({a.base_url, c.base_url}) for _ in range(4)} == {a, c}


def test_a_model_of_no_configured_server_may_go_anywhere(pool: UpstreamPool) -> None:
    assert {pool.pick() for _ in range(3)} == set(pool.upstreams)
    assert {pool.pick({"http://removed:11434"}) for _ in range(3)} == set(pool.upstreams)


def test_least_in_flight_first_and_idle_ties_in_turn(pool: UpstreamPool) -> None:
    a, b, c = pool.upstreams
    picks = Counter(pool.pick() for _ in range(30))
    assert picks == {a: 10, b: 10, c: 10}

    pool.begin(a)
    pool.begin(a)
    pool.begin(b)
    assert pool.pick() is c
    pool.begin(c)
    assert pool.pick() in (b, c)
    pool.end(a)
    pool.end(a)
    assert pool.pick() is a
    assert metric("neuronetz_upstream_in_flight_requests", b) == 1
    assert metric("neuronetz_upstream_in_flight_requests", a) == 0


def test_exclude_skips_a_server_already_tried(pool: UpstreamPool) -> None:
    a, b, _ = pool.upstreams
    having = {a.base_url, b.base_url}
    assert pool.pick(having, exclude=[a]) is b
    assert pool.pick(having, exclude=[a, b]) is None


@pytest.mark.parametrize("kind", [CONNECT, TIMEOUT])
def test_connect_failures_and_timeouts_eject(pool: UpstreamPool, kind: str) -> None:
    a, b, c = pool.upstreams
    pool.failed(a, kind)

    assert not a.in_rotation
    assert pool.pick({a.base_url}) is None
    assert {pool.pick() for _ in range(4)} == {b, c}
    assert pool.in_rotation() == [b, c]
    assert pool.retry_after({a.base_url}) == 1
    assert metric("neuronetz_upstream_up", a) == 0
    assert metric("neuronetz_upstream_up", b) == 1
    assert metric("neuronetz_upstream_errors_total", a, kind=kind) == 1
    assert pool.ejected.is_set()


@pytest.mark.parametrize("kind", [STATUS, STREAM])
def test_errors_of_a_server_that_answered_do_not_eject(pool: UpstreamPool, kind: str) -> None:
    a = pool.upstreams[0]
    pool.failed(a, kind)
    pool.failed(a, kind)

    assert a.in_rotation
    assert pool.pick({a.base_url}) is a
    assert metric("neuronetz_upstream_errors_total", a, kind=kind) == 2
    assert not pool.ejected.is_set()


def test_probes_back_off_doubling_up_to_the_cap(pool: UpstreamPool, clock: Clock) -> None:
    a = pool.upstreams[0]
    pool.eject(a, CONNECT)
    assert pool.next_probe_in() == 1.0
    assert pool.due_for_probe() == []

    delays = []
    for _ in range(6):
        clock.now += pool.next_probe_in() or 0.0
        assert pool.due_for_probe() == [a]
        pool.probe_failed(a)
        delays.append(pool.next_probe_in())
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert pool.retry_after({a.base_url}) == 10
    clock.now += 9.5
    assert pool.retry_after({a.base_url}) == 1
    assert not a.in_rotation


def test_a_second_failure_of_the_same_outage_does_not_stretch_the_back_off(
    pool: UpstreamPool, clock: Clock
) -> None:
    a = pool.upstreams[0]
    pool.failed(a, CONNECT)
    clock.now += 0.5
    pool.failed(a, TIMEOUT)
    assert pool.next_probe_in() == 0.5


def test_readmission_puts_the_server_back_and_resets_the_back_off(
    pool: UpstreamPool, clock: Clock
) -> None:
    a = pool.upstreams[0]
    pool.eject(a, CONNECT)
    clock.now += 1.0
    pool.probe_failed(a)
    clock.now += 2.0
    pool.readmit(a)

    assert a.in_rotation
    assert pool.pick({a.base_url}) is a
    assert pool.next_probe_in() is None
    assert pool.due_for_probe() == []
    assert metric("neuronetz_upstream_up", a) == 1

    pool.eject(a, CONNECT)
    assert pool.next_probe_in() == 1.0  # a new outage starts at the base back-off


def test_every_server_ejected_leaves_nothing_to_pick(pool: UpstreamPool) -> None:
    for upstream in pool.upstreams:
        pool.eject(upstream, CONNECT)
    assert pool.pick() is None
    assert pool.in_rotation() == []
    assert pool.retry_after() == 1


def test_a_server_listed_twice_is_one_server() -> None:
    first, second = urls(2)
    pool = UpstreamPool([first, second, first])
    assert [u.base_url for u in pool.upstreams] == [first, second]


def test_a_pool_needs_a_server() -> None:
    with pytest.raises(ValueError, match="at least one"):
        UpstreamPool([])
