"""Micro-benchmark: what one admission + settlement costs the gateway (docs/PERFORMANCE.md).

    uv run python -m bench.limiter                   # the in-process limiter (standalone)
    uv run python -m bench.limiter --redis URL       # ... and the Redis limiter

Every request is admitted and settled in turn by one coroutine, like the pipeline does
for a request, with every limit set on the key and on its tenant (rpm, tpm, concurrency
and the three budgets: the most work a script does; the windows never fill up). The
figures are µs of this process's CPU and of wall-clock time per request (admit + settle),
the median of `--repeat` runs of `--requests` requests each. Only the limiter's public
API is used, so the same file measures any version of the limiter.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import (
    AdmissionRequest,
    Limiter,
    MemoryLimiter,
    RedisLimiter,
    RespClient,
)

HUGE = 10**12
TENANT = LimitValues(
    rpm=HUGE,
    tpm=HUGE,
    max_concurrent=1000,
    daily_tokens=HUGE,
    monthly_tokens=HUGE,
    total_tokens=HUGE,
)
KEY = LimitValues(
    rpm=HUGE,
    tpm=HUGE,
    max_concurrent=100,
    daily_tokens=HUGE,
    monthly_tokens=HUGE,
    total_tokens=HUGE,
)
LEASE_SECONDS, DEFAULT_MAX_OUTPUT = 300, 1024


class NoUsage:
    """Budget counters start at zero (no Postgres needed)."""

    async def used_tokens(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID | None, since: object
    ) -> int:
        return 0


Cleanup = Callable[[tuple[str, ...]], Awaitable[object]]


async def keep(keys: tuple[str, ...]) -> None:
    """Nothing to clean: each in-process limiter has its own store."""


@dataclass(frozen=True, slots=True)
class Figures:
    cpu_us: float
    wall_us: float


def requests(count: int) -> list[AdmissionRequest]:
    """`count` requests of one key of a fresh tenant (built before the clock starts)."""
    tenant_id, key_id = uuid.uuid4(), uuid.uuid4()
    return [
        AdmissionRequest(
            tenant_id=tenant_id,
            key_id=key_id,
            request_id=uuid.uuid4().hex,
            tenant_limits=TENANT,
            key_limits=KEY,
            prompt_estimate=40,
            client_output_cap=256,
        )
        for _ in range(count)
    ]


async def run(limiter: Limiter, count: int, clean: Cleanup) -> Figures:
    """Admit and settle `count` requests one after the other."""
    batch = requests(count + 1)
    admission = await limiter.admit(batch.pop())  # the budget counters are rebuilt once
    await limiter.settle(admission.ticket, 40, 100)
    cpu, wall = time.process_time(), time.perf_counter()
    for request in batch:
        admission = await limiter.admit(request)
        await limiter.settle(admission.ticket, 40, 100)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await clean(admission.ticket.keys)
    return Figures(cpu / count * 1e6, wall / count * 1e6)


async def measure(
    name: str, make: Callable[[], Limiter], count: int, repeat: int, clean: Cleanup
) -> None:
    runs = [await run(make(), count, clean) for _ in range(repeat)]
    cpu = statistics.median(figure.cpu_us for figure in runs)
    wall = statistics.median(figure.wall_us for figure in runs)
    spread = ", ".join(f"{figure.cpu_us:.1f}" for figure in runs)
    print(f"{name:<10} {cpu:8.1f} {wall:8.1f}   (CPU µs per run: {spread})")


async def main(redis_url: str | None, count: int, repeat: int) -> None:
    print(f"{'backend':<10} {'CPU µs':>8} {'wall µs':>8}   per admit + settle, median of {repeat}")
    await measure(
        "in-process",
        lambda: MemoryLimiter(
            NoUsage(), lease_seconds=LEASE_SECONDS, default_max_output_tokens=DEFAULT_MAX_OUTPUT
        ),
        count,
        repeat,
        keep,
    )
    if redis_url is not None:
        client = RespClient(redis_url)

        async def delete(keys: tuple[str, ...]) -> object:
            return await client.execute("DEL", *keys)

        def limiter() -> Limiter:
            return RedisLimiter(
                client,
                NoUsage(),
                lease_seconds=LEASE_SECONDS,
                default_max_output_tokens=DEFAULT_MAX_OUTPUT,
            )

        try:
            await measure("redis", limiter, count, repeat, delete)
        finally:
            await client.aclose()


if __name__ == "__main__":
    # The counters' rebuild is logged at info, once per run: not part of the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", metavar="URL", help="also measure the Redis limiter")
    parser.add_argument("--requests", type=int, default=5000, help="requests per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the median is reported")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.redis, arguments.requests, arguments.repeat))
