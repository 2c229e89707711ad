"""Fair share of Ollama through two real gateway replicas on Postgres + Redis
(docs/REFERENCE.md §10, docs/SCHEDULING.md): isolation, work conservation, weights,
never more than the slots, bounded waits, clients leaving, a replica killed while it
holds slots. The scenarios live in tests/support/fair_share.py (the standalone module
runs them too); times are measured at the double.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.doubles.ollama import OllamaDouble, timeline
from tests.e2e.conftest import limited_key
from tests.support import fair_share
from tests.support.factories import KeyFixture
from tests.support.fair_share import (
    A_MODEL,
    A_SERVICE_SECONDS,
    B_MODEL,
    ISOLATION_BOUND_SECONDS,
    LEASE_SECONDS,
    SLOTS,
    by_label,
    queue_env,
    wait_until_queued,
)
from tests.support.load import CLIENT_LIMITS, Sent, StreamingTenant, percentile, send
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble() as running:
        yield running


@pytest.fixture(scope="module")
def replicas(database_url: str, double: OllamaDouble) -> Iterator[list[GatewayProcess]]:
    started = [start_gateway(database_url, double, queue_env()) for _ in range(2)]
    yield started
    for process in started:
        process.stop()


@pytest.fixture(autouse=True)
def _gpu(double: OllamaDouble) -> None:
    fair_share.set_gpu(double)


@pytest.fixture
async def a_key(session: AsyncSession) -> KeyFixture:
    return await limited_key(session)


@pytest.fixture
async def b_key(session: AsyncSession) -> KeyFixture:
    return await limited_key(session)


async def test_isolation_b_waits_at_most_one_a_service_behind_a_40_stream_backlog(
    double: OllamaDouble, replicas: list[GatewayProcess], a_key: KeyFixture, b_key: KeyFixture
) -> None:
    at_double, _ = await fair_share.isolation(double, replicas, a_key, b_key)

    assert percentile(at_double, 0.95) <= ISOLATION_BOUND_SECONDS
    # A's requests waited in the gateway, not at "Ollama": its runners never queued.
    assert max(timeline.waits(double.requests)) < 0.1
    assert timeline.max_overlap(timeline.generating(double.requests)) == SLOTS


async def test_without_the_queue_b_waits_behind_a_whole_backlog(
    database_url: str, double: OllamaDouble, a_key: KeyFixture, b_key: KeyFixture
) -> None:
    """Today's figure (OLLAMA_SLOTS=0: every request forwarded at once): B's first token
    comes after A's backlog, about 40 / 4 x 1 s. Proves the isolation bound can fail."""
    unqueued = start_gateway(database_url, double, queue_env(OLLAMA_SLOTS="0"))
    a = StreamingTenant("A", a_key.secret, A_MODEL, [unqueued.base_url], 40)
    sent: list[Sent] = []
    try:
        async with httpx.AsyncClient(timeout=120, limits=CLIENT_LIMITS) as client:
            a.start(client)
            await asyncio.to_thread(double.wait_for_requests, 40, 20)
            try:
                for number in range(2):
                    label = f"B-{number}"
                    await send(client, unqueued.base_url, b_key.secret, B_MODEL, label, sent)
            finally:
                await a.stop()
    finally:
        unqueued.stop()
    # What A left queued at the double still runs (Ollama finishes what it was sent):
    # the next test starts with the GPU idle.
    await asyncio.to_thread(double.wait_until_idle, 60)
    records = by_label(double)
    waits = [(records[s.label].started_at or 0.0) - s.sent_at for s in sent]
    print(f"B's TTFB without the queue: {max(waits):.3f} s at the double")
    assert min(waits) > ISOLATION_BOUND_SECONDS


async def test_work_conserving_4_of_as_requests_run_whenever_4_wait(
    double: OllamaDouble, replicas: list[GatewayProcess], a_key: KeyFixture
) -> None:
    a = StreamingTenant("A", a_key.secret, A_MODEL, [p.base_url for p in replicas], 40)
    async with httpx.AsyncClient(timeout=120, limits=CLIENT_LIMITS) as client:
        a.start(client)
        try:
            await wait_until_queued(replicas, client, a.streams - 2 * SLOTS)
            start = time.monotonic()
            await asyncio.sleep(5 * A_SERVICE_SECONDS)  # the window observed at the double
            end = time.monotonic()
        finally:
            await a.stop()

    running = timeline.generating(double.requests, now=end)

    busy = timeline.busy_time(running, start, end, at_least=SLOTS)
    handovers = sum(start < finish < end for _, finish in running)
    idle_per_handover = (end - start - busy) / max(1, handovers)
    print(
        f"4 slots busy {busy / (end - start):.1%} of the time while A had >= 4 waiting; "
        f"{idle_per_handover * 1000:.1f} ms idle per hand-over"
    )
    # Only hand-overs leave a runner idle (the answer's end relayed, the release, the
    # grant, the next forward): milliseconds, never a wait for a timer or a tick.
    assert idle_per_handover <= 0.05
    assert timeline.max_overlap(running) == SLOTS


async def test_weights_3_to_1_share_completed_requests_3_to_1(
    double: OllamaDouble, replicas: list[GatewayProcess], session: AsyncSession
) -> None:
    heavy = await fair_share.weighted_key(session, 3)
    light = await fair_share.weighted_key(session, 1)

    count_a, count_b = await fair_share.weights(double, replicas, heavy, light)

    assert 3 * 0.85 <= count_a / count_b <= 3 * 1.15


async def test_never_more_than_the_slots_at_ollama_with_2_replicas_x_100(
    double: OllamaDouble, replicas: list[GatewayProcess], a_key: KeyFixture
) -> None:
    double.gpu.parallel = 0  # the double runs whatever it gets: excess would show
    double.completion_tokens = 5
    async with httpx.AsyncClient(timeout=120, limits=CLIENT_LIMITS) as client:
        results = await asyncio.gather(
            *(
                send(client, replicas[n % 2].base_url, a_key.secret, A_MODEL, f"A-{n}")
                for n in range(200)
            )
        )

    assert [r.status for r in results] == [200] * 200
    chats = [r for r in double.requests if r.path == "/api/chat"]
    assert len(chats) == 200
    assert timeline.max_overlap(timeline.in_flight(chats)) == SLOTS


async def test_a_wait_past_queue_max_wait_is_503_server_busy_with_retry_after(
    database_url: str, double: OllamaDouble, a_key: KeyFixture, engine: AsyncEngine
) -> None:
    bounded = start_gateway(database_url, double, queue_env(QUEUE_MAX_WAIT_SECONDS="1"))
    try:
        await fair_share.past_the_wait(double, bounded, a_key, engine)
    finally:
        bounded.stop()


async def test_a_client_that_leaves_while_queued_never_reaches_ollama(
    double: OllamaDouble, replicas: list[GatewayProcess], a_key: KeyFixture, engine: AsyncEngine
) -> None:
    await fair_share.leaving_while_queued(double, replicas[0], replicas[1], a_key, engine)


async def test_a_killed_replicas_slots_serve_others_within_the_lease_and_a_second(
    database_url: str, double: OllamaDouble, replicas: list[GatewayProcess], a_key: KeyFixture
) -> None:
    double.completion_tokens = 1000  # 20 s per answer: held until the replica dies
    doomed = start_gateway(database_url, double, queue_env())
    try:
        async with httpx.AsyncClient(timeout=60, limits=CLIENT_LIMITS) as client:
            holders = [
                asyncio.create_task(
                    send(client, doomed.base_url, a_key.secret, A_MODEL, f"hold-{n}")
                )
                for n in range(SLOTS)
            ]
            await asyncio.to_thread(double.wait_for_requests, SLOTS, 10)
            waiting = asyncio.create_task(
                send(client, replicas[0].base_url, a_key.secret, B_MODEL, "after-kill")
            )
            await wait_until_queued([replicas[0]], client, 1)
            doomed.signal(signal.SIGKILL)
            killed_at = time.monotonic()
            result = await waiting
            await asyncio.gather(*holders, return_exceptions=True)
    finally:
        doomed.kill()
    await asyncio.to_thread(double.wait_until_idle, 60)

    assert result.status == 200
    started = by_label(double)["after-kill"].started_at
    assert started is not None
    print(f"served {started - killed_at:.3f} s after the SIGKILL")
    assert started - killed_at <= LEASE_SECONDS + 1
