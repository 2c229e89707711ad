"""Fair share in standalone mode (SQLite, the scheduler's scripts in the process):
isolation, weights and the bounds, as on Redis (tests/support/fair_share.py), through
one gateway process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.doubles.ollama import OllamaDouble, timeline
from tests.e2e.conftest import STANDALONE, Backend, limited_key
from tests.support import fair_share
from tests.support.factories import KeyFixture
from tests.support.fair_share import ISOLATION_BOUND_SECONDS, SLOTS, queue_env
from tests.support.load import percentile
from tests.support.processes import GatewayProcess
from tests.support.stack import start_standalone_gateway

pytestmark = pytest.mark.parametrize("backend", [STANDALONE], indirect=True, scope="module")


def _data_dir(backend: Backend) -> Path:
    return Path(backend.database_url.removeprefix("sqlite+aiosqlite:///")).parent


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble() as running:
        yield running


@pytest.fixture(scope="module")
def standalone(backend: Backend, double: OllamaDouble) -> Iterator[GatewayProcess]:
    process = start_standalone_gateway(_data_dir(backend), double, queue_env())
    yield process
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


async def test_isolation_standalone(
    double: OllamaDouble, standalone: GatewayProcess, a_key: KeyFixture, b_key: KeyFixture
) -> None:
    at_double, _ = await fair_share.isolation(double, [standalone], a_key, b_key)

    assert percentile(at_double, 0.95) <= ISOLATION_BOUND_SECONDS
    assert timeline.max_overlap(timeline.generating(double.requests)) == SLOTS


async def test_weights_3_to_1_standalone(
    double: OllamaDouble, standalone: GatewayProcess, session: AsyncSession
) -> None:
    heavy = await fair_share.weighted_key(session, 3)
    light = await fair_share.weighted_key(session, 1)

    count_a, count_b = await fair_share.weights(double, [standalone], heavy, light)

    assert 3 * 0.85 <= count_a / count_b <= 3 * 1.15


async def test_a_wait_past_queue_max_wait_standalone(
    backend: Backend,
    double: OllamaDouble,
    standalone: GatewayProcess,
    a_key: KeyFixture,
    engine: AsyncEngine,
) -> None:
    # A second standalone process on the same data: its own queue, the module's idle.
    bounded = start_standalone_gateway(
        _data_dir(backend), double, queue_env(QUEUE_MAX_WAIT_SECONDS="1")
    )
    try:
        await fair_share.past_the_wait(double, bounded, a_key, engine)
    finally:
        bounded.stop()


async def test_a_client_that_leaves_while_queued_standalone(
    double: OllamaDouble, standalone: GatewayProcess, a_key: KeyFixture, engine: AsyncEngine
) -> None:
    await fair_share.leaving_while_queued(double, standalone, standalone, a_key, engine)
