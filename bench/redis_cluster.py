"""Micro-benchmark: what the cluster client adds to an admission (docs/REDIS_CLUSTER.md).

    uv run python -m bench.redis_cluster [--redis URL] [--requests N] [--repeat R]

Starts a three-master Redis Cluster of its own (tests/support/redis_cluster.py, needs
`redis-server` and `redis-cli`), then admits and settles requests one after another with
the real limiter (every limit set on key and tenant), once on one Redis (`--redis`,
default the test Redis, database 14) and once on the cluster (`REDIS_CLUSTER=true`'s
client), interleaved. Prints µs of this process's CPU and of wall-clock time per
request (admit + settle), the median of `--repeat` runs, and the routing of one
admission's command alone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import uuid
from datetime import date

import structlog

from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.limits import AdmissionRequest, RedisLimiter, RespClient
from neuronetz_gateway.redis_cluster import ClusterClient, RedisCommands
from neuronetz_gateway.redis_cluster.routing import route
from neuronetz_gateway.scripting.resp import pack_items
from tests.support.redis_cluster import RedisClusterNodes

HUGE = 10**12
LIMITS = LimitValues(
    rpm=HUGE,
    tpm=HUGE,
    max_concurrent=1000,
    daily_tokens=HUGE,
    monthly_tokens=HUGE,
    total_tokens=HUGE,
)


class NoUsage:
    """Budget counters start empty (no Postgres needed)."""

    async def used_tokens(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID | None, since: date | None
    ) -> int:
        return 0


async def per_request(client: RedisCommands, requests: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per admit + settle of one tenant's key."""
    limiter = RedisLimiter(client, NoUsage(), lease_seconds=30, default_max_output_tokens=100)
    tenant, key = uuid.uuid4(), uuid.uuid4()

    def request() -> AdmissionRequest:
        return AdmissionRequest(
            tenant_id=tenant,
            key_id=key,
            request_id=uuid.uuid4().hex,
            tenant_limits=LIMITS,
            key_limits=LIMITS,
            prompt_estimate=10,
            client_output_cap=None,
            produces_output=True,
        )

    for _ in range(50):  # counters rebuilt, scripts loaded, connections open
        await limiter.settle((await limiter.admit(request())).ticket, 5, 5)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        await limiter.settle((await limiter.admit(request())).ticket, 5, 5)
    return (
        (time.process_time() - cpu) / requests * 1e6,
        (time.perf_counter() - wall) / requests * 1e6,
    )


def routing_us() -> float:
    """CPU µs to route one admission's EVALSHA (14 keys, 40 arguments)."""
    tag = uuid.uuid4()
    keys = [f"nz:lim:{{{tag}}}:k:{uuid.uuid4()}:x{i}" for i in range(14)]
    data = pack_items(("EVALSHA", "a" * 40, "14", *keys, *("1" * 40)))
    count, started = 20_000, time.process_time()
    for _ in range(count):
        route(56, data)
    return (time.process_time() - started) / count * 1e6


async def run(redis_url: str, cluster_url: str, requests: int, repeat: int) -> None:
    single, cluster = RespClient(redis_url), ClusterClient(cluster_url)
    results: dict[str, list[tuple[float, float]]] = {"one Redis": [], "cluster": []}
    try:
        for _ in range(repeat):
            results["one Redis"].append(await per_request(single, requests))
            results["cluster"].append(await per_request(cluster, requests))
    finally:
        await single.aclose()
        await cluster.aclose()
    for name, runs in results.items():
        cpu = statistics.median(run[0] for run in runs)
        wall = statistics.median(run[1] for run in runs)
        print(f"{name:10} admit+settle: {cpu:6.1f} µs CPU, {wall:6.1f} µs wall per request")
    print(f"routing one admission's command: {routing_us():.1f} µs CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    nodes = RedisClusterNodes().start()
    try:
        asyncio.run(run(options.redis, nodes.url, options.requests, options.repeat))
    finally:
        nodes.stop()


if __name__ == "__main__":
    main()
