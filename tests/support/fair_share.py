"""The fair-share scenarios (docs/REFERENCE.md §10), run through any set of gateway
processes against a double that models the GPU: the Redis module runs them on two
replicas, the standalone module on one process, with the same assertions.

Times are measured at the double (its records use the test process's monotonic clock),
not by clients that a busy machine delays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin.limits import LimitUpdate, set_tenant_limits
from tests.doubles.ollama import OllamaDouble, RecordedRequest
from tests.e2e.conftest import allow_all_models, audit_rows
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.load import CLIENT_LIMITS, Sent, StreamingTenant, label_of, percentile, send
from tests.support.metrics import scrape
from tests.support.processes import GatewayProcess

SLOTS = 4
LEASE_SECONDS = 3
TOKEN_SECONDS = 0.02
A_TOKENS = 50  # one A answer: 50 tokens x 20 ms = 1 s on a slot
A_SERVICE_SECONDS = A_TOKENS * TOKEN_SECONDS
A_MODEL, B_MODEL = "llama3.1:8b", "qwen2.5:0.5b"
ISOLATION_BOUND_SECONDS = A_SERVICE_SECONDS + 0.1


def queue_env(**overrides: str) -> dict[str, str]:
    return {
        "OLLAMA_SLOTS": str(SLOTS),
        "CONCURRENCY_LEASE_SECONDS": str(LEASE_SECONDS),
        "QUEUE_MAX_WAIT_SECONDS": "60",
        "UPSTREAM_READ_TIMEOUT_SECONDS": "60",
        **overrides,
    }


async def weighted_key(session: AsyncSession, weight: int) -> KeyFixture:
    """A key of a new tenant that may use every model, with `weight` (set-limits'
    operation, so it works on Postgres and SQLite alike)."""
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    await set_tenant_limits(session, tenant.name, LimitUpdate(weight=weight))
    return await make_key(session, tenant.name)


def set_gpu(double: OllamaDouble) -> None:
    """Ollama runs as many requests at once as the gateway sends, 20 ms per token; A's
    answers take 50 tokens, B's (another model) 5."""
    double.gpu.parallel = SLOTS
    double.gpu.token_seconds = TOKEN_SECONDS
    double.completion_tokens = A_TOKENS
    double.behaviour_for(B_MODEL).completion_tokens = 5


def by_label(double: OllamaDouble) -> dict[str, RecordedRequest]:
    return {label_of(r): r for r in double.requests if r.path == "/api/chat"}


async def queued(process: GatewayProcess, client: httpx.AsyncClient) -> float:
    return (await scrape(client, process.base_url)).value("neuronetz_queued_requests")


async def wait_until_queued(
    processes: Sequence[GatewayProcess], client: httpx.AsyncClient, at_least: int
) -> None:
    """Until the processes' `neuronetz_queued_requests` add up to `at_least`."""
    async with asyncio.timeout(20):
        while sum([await queued(p, client) for p in processes]) < at_least:
            await asyncio.sleep(0.05)  # polls the gateways' own gauge


async def isolation(
    double: OllamaDouble,
    processes: Sequence[GatewayProcess],
    a_key: KeyFixture,
    b_key: KeyFixture,
    *,
    b_requests: int = 30,
) -> tuple[list[float], list[float]]:
    """A keeps 40 streams open (re-opening each as it ends) through `processes`; B sends
    `b_requests` requests one after another. B's wait from sending to its first token
    at the double, and its time to first byte as its client saw it."""
    a = StreamingTenant("A", a_key.secret, A_MODEL, [p.base_url for p in processes], 40)
    sent: list[Sent] = []
    async with httpx.AsyncClient(timeout=120, limits=CLIENT_LIMITS) as client:
        a.start(client)
        await wait_until_queued(processes, client, a.streams - len(processes) * SLOTS)
        try:
            for number in range(b_requests):
                base = processes[number % len(processes)].base_url
                result = await send(client, base, b_key.secret, B_MODEL, f"B-{number}", sent)
                assert result.status == 200
        finally:
            await a.stop()
    records = by_label(double)
    at_double = [(records[s.label].started_at or 0.0) - s.sent_at for s in sent]
    at_client = [(s.first_byte_at or 0.0) - s.sent_at for s in sent]
    print(  # the figure for docs/SCHEDULING.md
        f"B's TTFB with the queue: p95 {percentile(at_double, 0.95):.3f} s at the double, "
        f"{percentile(at_client, 0.95):.3f} s at the client (bound {ISOLATION_BOUND_SECONDS} s)"
    )
    return at_double, at_client


async def weights(
    double: OllamaDouble,
    processes: Sequence[GatewayProcess],
    heavy: KeyFixture,
    light: KeyFixture,
    *,
    seconds: float = 20.0,
) -> tuple[int, int]:
    """A (`heavy`) and B (`light`) each keep 20 streams open for `seconds`; the requests
    of each the double completed meanwhile."""
    double.completion_tokens = 20  # 0.4 s per answer: about 200 answers in 20 s
    bases = [p.base_url for p in processes]
    a = StreamingTenant("A", heavy.secret, A_MODEL, bases, 20)
    b = StreamingTenant("B", light.secret, A_MODEL, bases, 20)
    async with httpx.AsyncClient(timeout=120, limits=CLIENT_LIMITS) as client:
        a.start(client)
        b.start(client)
        try:
            await wait_until_queued(processes, client, 40 - len(processes) * SLOTS)
            start = time.monotonic()
            await asyncio.sleep(seconds)  # both saturating
            end = time.monotonic()
        finally:
            await asyncio.gather(a.stop(), b.stop())
    completed = [
        r for r in double.requests if r.completed and start <= (r.finished_at or 0.0) <= end
    ]
    count_a = sum(label_of(r).startswith("A-") for r in completed)
    count_b = sum(label_of(r).startswith("B-") for r in completed)
    print(f"completed in {seconds:.0f} s: A {count_a}, B {count_b}")
    return count_a, count_b


async def past_the_wait(
    double: OllamaDouble, bounded: GatewayProcess, key: KeyFixture, engine: AsyncEngine
) -> None:
    """`bounded` waits at most 1 s: with its slots taken, a request gets 503
    server_busy with Retry-After after about that, audited `unavailable` with its wait;
    the double never sees it."""
    double.completion_tokens = 200  # 4 s per answer: the slots stay taken
    async with httpx.AsyncClient(timeout=60, limits=CLIENT_LIMITS) as client:
        holders = [
            asyncio.create_task(send(client, bounded.base_url, key.secret, A_MODEL, f"hold-{n}"))
            for n in range(SLOTS)
        ]
        await asyncio.to_thread(double.wait_for_requests, SLOTS, 10)
        started = time.monotonic()
        refused = await client.post(
            bounded.base_url + "/v1/chat/completions",
            json={"model": A_MODEL, "messages": [{"role": "user", "content": "late"}]},
            headers={"Authorization": f"Bearer {key.secret}", "X-Request-ID": "late-1"},
        )
        waited = time.monotonic() - started
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "server_busy"
    assert refused.json()["error"]["message"] == "server busy, retry shortly"
    assert 1.0 <= waited < 5.0
    assert "late" not in by_label(double)
    [row] = await audit_rows(engine, "late-1")
    assert row.outcome == "unavailable"
    assert row.status_code == 503
    assert row.queue_ms is not None
    assert row.queue_ms >= 1000


async def leaving_while_queued(
    double: OllamaDouble,
    holding: GatewayProcess,
    waiting: GatewayProcess,
    key: KeyFixture,
    engine: AsyncEngine,
) -> None:
    """Slots taken through `holding`; a request through `waiting` is queued and its
    client leaves: audited `cancelled` with its wait, never seen by the double, the
    queue empty again and the next request served."""
    double.completion_tokens = 100  # 2 s per answer
    async with httpx.AsyncClient(timeout=60, limits=CLIENT_LIMITS) as client:
        holders = [
            asyncio.create_task(send(client, holding.base_url, key.secret, A_MODEL, f"hold-{n}"))
            for n in range(SLOTS)
        ]
        await asyncio.to_thread(double.wait_for_requests, SLOTS, 10)
        leaving = asyncio.create_task(
            send(client, waiting.base_url, key.secret, A_MODEL, "leaves", request_id="leaves-1")
        )
        await wait_until_queued([waiting], client, 1)
        leaving.cancel()  # closes its connection: the client is gone
        await asyncio.gather(leaving, return_exceptions=True)
        [row] = await audit_rows(engine, "leaves-1")
        assert await queued(waiting, client) == 0
        after = await send(client, waiting.base_url, key.secret, A_MODEL, "after")
        await asyncio.gather(*holders)

    assert row.outcome == "cancelled"
    assert row.queue_ms is not None
    assert row.queue_ms > 0
    assert after.status == 200
    assert "leaves" not in by_label(double)
