"""A stream longer than the concurrency lease keeps its slot (docs/LIMITS.md): the
gateway refreshes the lease while it relays, and lets it go when the stream ends."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import limited_key
from tests.e2e.test_limits import CHAT, auth
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

LEASE_SECONDS = 2
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="module")
def gateway(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    env = {"REDIS_URL": REDIS_URL, "CONCURRENCY_LEASE_SECONDS": str(LEASE_SECONDS)}
    process = start_gateway(database_url, double, env)
    yield process
    process.stop()


@pytest.fixture
async def client(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        yield client


async def test_a_stream_longer_than_two_leases_holds_its_slot_to_the_end(
    client: httpx.AsyncClient, session: AsyncSession, double: OllamaDouble
) -> None:
    double.completion_tokens = 400
    double.chunk_delay = 0.0125  # about 5 s: two and a half leases
    key = await limited_key(session, key={"max_concurrent": 1})
    started = time.monotonic()
    try:
        async with client.stream("POST", "/api/chat", json={**CHAT, "stream": True},
                                 headers=auth(key)) as stream:  # fmt: skip
            assert stream.status_code == 200
            chunks = stream.aiter_lines()
            checked = 0
            async for _ in chunks:
                elapsed = time.monotonic() - started
                # Past one lease, then past two: a lease not refreshed would have expired.
                if elapsed > (checked + 1.25) * LEASE_SECONDS and checked < 2:
                    busy = await client.post("/api/chat", json=CHAT, headers=auth(key))
                    assert busy.status_code == 429, f"slot lost after {elapsed:.1f} s"
                    checked += 1
            assert checked == 2, "the stream ended before two leases had passed"
    finally:
        double.completion_tokens = 5
        double.chunk_delay = 0.0
    # The stream ended: its lease is released at once, not when it would expire.
    after = await client.post("/api/chat", json=CHAT, headers=auth(key))
    assert after.status_code == 200
