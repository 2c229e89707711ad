"""Scenario 5: legitimate traffic with and without a flood of wrong keys.

Both streams of requests are open-loop (sent on a fixed schedule, latency measured
from the scheduled time, so a stalled gateway cannot hide behind a waiting client).
The flood runs in its own process at `rate` requests per second; its keys are well
formed (valid checksum) with random secrets, half of them under the real key's prefix
and half under random prefixes (both reach Postgres and Argon2, the second against a
decoy hash, as far as the failure budget lets them). The flood comes from one client
address, so it spends that client's share of the budget; with
`--gateway-env TRUSTED_PROXY_IPS=127.0.0.1` every request names its own address in
`X-Forwarded-For` and the flood spends the whole process budget, like a flood from many
addresses.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import cycle
from typing import Any

import uvloop

from bench.rawhttp import ConnectionPool, render_request
from bench.requests import NATIVE_CHAT, Target
from bench.stats import summary
from neuronetz_gateway.auth.keys import BASE62, KEY_SCHEME, PREFIX_ALPHABET, SECRET_CHARS, checksum

MAX_IN_FLIGHT = 1024
FLOOD_LEAD = 1.5  # seconds the flood runs before and after the measured traffic


def wrong_key(prefix: str | None) -> str:
    """A well-formed key (valid checksum) with a random secret; random prefix if None."""
    display = prefix or KEY_SCHEME + "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))
    body = display + "".join(secrets.choice(BASE62) for _ in range(SECRET_CHARS))
    return body + checksum(body)


@dataclass
class LoadResult:
    latency_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    client_errors: int = 0
    dropped: int = 0  # not sent: too many requests already in flight


async def open_loop(port: int, requests: list[bytes], rate: float, seconds: float) -> LoadResult:
    """Send `requests` (cycled) at `rate`/s for `seconds`; latency from the schedule.

    Times come from `time.monotonic()`, not `loop.time()`: uvloop's clock has
    millisecond resolution, too coarse for latencies of a few milliseconds.
    """
    pool = ConnectionPool(port)
    result = LoadResult()
    tasks: set[asyncio.Task[None]] = set()

    async def one(raw: bytes, scheduled: float) -> None:
        try:
            status = await pool.request(raw)
        except (OSError, ConnectionError):
            result.client_errors += 1
            return
        result.latency_ms.append((time.monotonic() - scheduled) * 1000.0)
        result.statuses[status] += 1

    start = time.monotonic() + 0.05
    total = int(rate * seconds)
    for index, raw in zip(range(total), cycle(requests), strict=False):
        scheduled = start + index / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= MAX_IN_FLIGHT:
            result.dropped += 1
            continue
        task = asyncio.create_task(one(raw, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    pool.close()
    return result


def _flood_requests(target: Target, prefix: str, count: int) -> list[bytes]:
    """`count` requests with fresh wrong keys, each naming a random client address in
    `X-Forwarded-For` (RFC 2544's benchmarking range): a gateway that trusts 127.0.0.1
    as a proxy sees a flood from many clients, any other sees one client."""
    return [
        render_request(
            "POST",
            NATIVE_CHAT.path,
            target.port,
            body=NATIVE_CHAT.body(stream=False),
            headers={
                "Authorization": f"Bearer {wrong_key(prefix if i % 2 == 0 else None)}",
                "X-Forwarded-For": f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}",
            },
        )
        for i in range(count)
    ]


def run_flood(target: Target, prefix: str, rate: float, seconds: float) -> dict[str, Any]:
    """The flood, in whatever process calls it; every request has a fresh wrong key."""
    requests = _flood_requests(target, prefix, max(1, int(rate * seconds)))
    result = uvloop.run(open_loop(target.port, requests, rate, seconds))
    answered = sum(result.statuses.values())
    return {
        "sent": answered + result.client_errors,
        "answered_per_second": round(answered / seconds, 1),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "client_errors": result.client_errors,
        "dropped": result.dropped,
        "latency_ms": summary(result.latency_ms),
    }


def _legit(target: Target, rate: float, seconds: float, delay: float = 0.0) -> dict[str, Any]:
    time.sleep(delay)  # lets the flood reach its rate first
    result = uvloop.run(open_loop(target.port, [target.request(NATIVE_CHAT)], rate, seconds))
    return {
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "client_errors": result.client_errors,
        "dropped": result.dropped,
        "latency_ms": summary(result.latency_ms),
    }


def run(
    target: Target, prefix: str, *, legit_rate: float, flood_rate: float, seconds: float
) -> dict[str, Any]:
    """Legitimate traffic alone, then with the flood; both in client processes."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        list(pool.map(abs, range(2)))  # start both interpreters before measuring
        baseline = pool.submit(_legit, target, legit_rate, seconds).result()
        lead = min(FLOOD_LEAD, seconds / 2)
        flood = pool.submit(run_flood, target, prefix, flood_rate, seconds + lead * 2)
        under_flood = pool.submit(_legit, target, legit_rate, seconds, lead).result()
        flood_result = flood.result()
    return {
        "legit_rate": legit_rate,
        "flood_rate": flood_rate,
        "seconds": seconds,
        "without_flood": baseline,
        "with_flood": under_flood,
        "flood": flood_result,
    }
