"""Scenario 10: the gateway's queue for Ollama's slots under contention (docs/SCHEDULING.md).

A stub answers streams that last `chunks x interval` (a "GPU" request). Two gateways on
the same stub serve the same rate of streams: one with `OLLAMA_SLOTS=slots` and
`clients` connections sending one stream after another (most requests wait in the
gateway's queue, are granted by a release and give their slot back), and one with
`OLLAMA_SLOTS=0` (no queue) and only `slots` connections (as many streams at once as
the first lets through). Per configuration: the requests completed, and the CPU time
per request of the gateway process and of Redis (`INFO cpu`; other clients of the same
Redis count too: run on a quiet machine). At the same rate, the fixed per-second costs
of a process cancel out, and the difference is the queue's own cost per grant (joining
the queue, the wake-up, the bookkeeping of the waiters).

The slots-free cost (the common case) is what scenarios 1 and 2 measure: their gateway
runs with slots to spare, so every request acquires and releases one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis

from bench.processes import cpu_seconds
from bench.rawhttp import AsyncConnection
from bench.requests import NATIVE_CHAT, Target


def redis_cpu_seconds(redis_url: str) -> float:
    """Redis's own CPU time (user + system) so far."""
    client = redis.Redis.from_url(redis_url)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _client(target: Target, raw: bytes, until: float) -> tuple[int, int]:
    """Streams one after another until `until`: (completed, not 200)."""
    connection = await AsyncConnection.open(target.port)
    done = errors = 0
    try:
        while time.monotonic() < until:
            status = await connection.request(raw)
            if status == 200:
                done += 1
            else:
                errors += 1
    finally:
        connection.close()
    return done, errors


async def _load(target: Target, clients: int, seconds: float) -> tuple[int, int]:
    raw = target.request(NATIVE_CHAT, stream=True)
    until = time.monotonic() + seconds
    results = await asyncio.gather(*(_client(target, raw, until) for _ in range(clients)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def measure(target: Target, redis_url: str, *, clients: int, seconds: float) -> dict[str, Any]:
    """One configuration under load: requests, rate, CPU per request (µs)."""
    assert target.pid is not None
    gateway_before, redis_before = cpu_seconds(target.pid), redis_cpu_seconds(redis_url)
    started = time.monotonic()
    completed, errors = asyncio.run(_load(target, clients, seconds))
    elapsed = time.monotonic() - started
    gateway_cpu = cpu_seconds(target.pid) - gateway_before
    redis_cpu = redis_cpu_seconds(redis_url) - redis_before
    per = max(1, completed)
    return {
        "requests": completed,
        "errors": errors,
        "rps": round(completed / elapsed, 1),
        "gateway_cpu_us_per_request": round(gateway_cpu / per * 1e6, 1),
        "redis_cpu_us_per_request": round(redis_cpu / per * 1e6, 1),
    }


def run(
    queued: Target, unqueued: Target, redis_url: str, *, clients: int, seconds: float, slots: int
) -> dict[str, Any]:
    """Both configurations at the same rate of streams, queued first; the queue's cost
    per grant (µs of CPU)."""
    with_queue = measure(queued, redis_url, clients=clients, seconds=seconds)
    without = measure(unqueued, redis_url, clients=slots, seconds=seconds)
    return {
        "slots": slots,
        "clients": clients,
        "queued": with_queue,
        "unqueued": without,
        "cost_per_grant_us": {
            "gateway": round(
                with_queue["gateway_cpu_us_per_request"] - without["gateway_cpu_us_per_request"],
                1,
            ),
            "redis": round(
                with_queue["redis_cpu_us_per_request"] - without["redis_cpu_us_per_request"], 1
            ),
        },
    }
