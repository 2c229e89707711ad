"""A refusal's time does not tell whether a key prefix exists (docs/SECURITY.md).

Against a running gateway: 200 keys with an unknown prefix and 200 wrong secrets
under real prefixes, alternated and paced (one at a time), take the same median time
within 20 %. Argon2 runs with parameters that make it dominate a refusal (a few
milliseconds here; production's default is tens), and a cached right key shows that
the test would see a shortcut: skipping Argon2 would put the unknown prefixes near it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin import keys
from neuronetz_gateway.auth.keys import KeyHasher, checksum, generate_key
from neuronetz_gateway.auth.throttle import PREFIX_BURST
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Backend
from tests.support.factories import make_tenant, unique_name
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

TRIES = 200
TIME_COST, MEMORY_KIB = 1, 8192  # ~4 ms per verification on the CI machine
HASHER = KeyHasher(time_cost=TIME_COST, memory_kib=MEMORY_KIB)


@pytest.fixture(scope="module")
def gateway(backend: Backend, double: OllamaDouble) -> Iterator[GatewayProcess]:
    process = start_gateway(
        backend.database_url,
        double,
        {
            "ARGON2_TIME_COST": str(TIME_COST),
            "ARGON2_MEMORY_KIB": str(MEMORY_KIB),
            # Room for 400 failures in a few seconds; the budget is tested elsewhere.
            "AUTH_FAILURES_PER_SECOND": "1000",
            "AUTH_FAILURE_BURST": "1000",
        },
    )
    yield process
    process.stop()


@pytest.fixture
async def client(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


def wrong_secrets(secret: str, count: int) -> list[str]:
    """`count` distinct well-formed keys under `secret`'s prefix, none of them right."""
    wrong = []
    for position in range(11, 11 + count):
        body = (
            secret[:position] + ("A" if secret[position] != "A" else "B") + secret[position + 1 :]
        )
        wrong.append(body[:43] + checksum(body[:43]))
    return wrong


def argon2_seconds() -> float:
    """What one verification with the module's parameters costs on this machine."""
    key = generate_key().secret
    stored = HASHER.hash(key)
    durations = []
    for _ in range(5):
        started = time.perf_counter()
        HASHER.verify(stored, key + "x")
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


async def timed(client: httpx.AsyncClient, secret: str, expected: int) -> float:
    started = time.perf_counter()
    response = await client.get("/api/tags", headers={"Authorization": f"Bearer {secret}"})
    elapsed = time.perf_counter() - started
    assert response.status_code == expected, response.text
    return elapsed


async def test_unknown_prefixes_and_wrong_secrets_take_the_same_time(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(session)
    per_key = int(PREFIX_BURST)  # the per-prefix budget of failures
    real = [
        await keys.create_key(session, HASHER, tenant_name=tenant.name, name=unique_name("k"))
        for _ in range(TRIES // per_key)
    ]
    wrong = [w for created in real for w in wrong_secrets(created.secret, per_key)]
    unknown = [generate_key().secret for _ in range(TRIES)]
    await timed(client, real[0].secret, 200)  # warm: connection, caches, the right key

    unknown_times, wrong_times, cached_times = [], [], []
    for unknown_key, wrong_key in zip(unknown, wrong, strict=True):
        # Interleaved, so that the machine's load weighs on the three alike.
        unknown_times.append(await timed(client, unknown_key, 401))
        wrong_times.append(await timed(client, wrong_key, 401))
        cached_times.append(await timed(client, real[0].secret, 200))

    unknown_median = statistics.median(unknown_times)
    wrong_median = statistics.median(wrong_times)
    cached_median = statistics.median(cached_times)
    verification = argon2_seconds()
    report = (
        f"unknown {unknown_median:.4f} s, wrong {wrong_median:.4f} s, "
        f"cached {cached_median:.4f} s, one verification {verification:.4f} s"
    )
    # Argon2 dominates a refusal: a path without it would stand out.
    assert min(unknown_median, wrong_median) - cached_median > verification / 2, report
    assert abs(unknown_median - wrong_median) <= 0.2 * max(unknown_median, wrong_median), report
