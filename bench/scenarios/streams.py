"""Scenario 3: many concurrent paced streams (NDJSON on /api/chat).

Every chunk the stub writes carries its send time (`bench_ts`, CLOCK_MONOTONIC, one
clock for all processes), so each chunk's *transit* (arrival minus send) is measured
exactly; the gateway's added delay is its transit minus the direct one. A socket read
that delivers more than one chunk counts as *merged*. Clients run in worker processes
(spawned) so a slow client cannot pass for a slow gateway; each reports its own CPU use.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import uvloop

from bench.processes import rss_kib
from bench.stats import summary

_STAMP = b'"bench_ts":'


@dataclass
class StreamPlan:
    port: int
    request: bytes
    streams: int
    ramp_seconds: float
    timeout_seconds: float


@dataclass
class WorkerResult:
    ttfb_ms: list[float] = field(default_factory=list)
    transit_ms: list[float] = field(default_factory=list)
    gap_ms: list[float] = field(default_factory=list)
    chunks: int = 0
    reads_with_chunks: int = 0
    merged_reads: int = 0
    completed: int = 0
    failed: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0


class _StreamClient(asyncio.Protocol):
    def __init__(self, request: bytes, result: WorkerResult, done: asyncio.Future[None]) -> None:
        self.request = request
        self.result = result
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
        self.sent = 0
        self.now = 0
        self.last_arrival = 0
        self.pending = b""
        self.in_read = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.sent = time.monotonic_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.now = time.monotonic_ns()
        self.in_read = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(ok=False)
        if self.in_read:
            self.result.reads_with_chunks += 1
            if self.in_read > 1:
                self.result.merged_reads += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(ok=False)

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        data = self.pending + body if self.pending else body
        lines = data.split(b"\n")
        self.pending = lines.pop()
        for line in lines:
            at = line.find(_STAMP)
            if at < 0:
                continue
            start = at + len(_STAMP)
            end = start
            while end < len(line) and 48 <= line[end] <= 57:
                end += 1
            self._chunk(int(line[start:end]))

    def on_message_complete(self) -> None:
        ok = self.parser.get_status_code() == 200
        self._finish(ok=ok)
        if self.transport is not None:
            self.transport.close()

    def _chunk(self, stamp: int) -> None:
        result, now = self.result, self.now
        if not self.last_arrival:
            result.ttfb_ms.append((now - self.sent) / 1e6)
        else:
            result.gap_ms.append((now - self.last_arrival) / 1e6)
        self.last_arrival = now
        result.transit_ms.append((now - stamp) / 1e6)
        result.chunks += 1
        self.in_read += 1

    def _finish(self, *, ok: bool) -> None:
        if self.done.done():
            return
        if ok:
            self.result.completed += 1
        else:
            self.result.failed += 1
        self.done.set_result(None)


async def _run_streams(plan: StreamPlan) -> WorkerResult:
    loop = asyncio.get_running_loop()
    result = WorkerResult()
    waiters: list[asyncio.Future[None]] = []
    started = loop.time()
    for index in range(plan.streams):
        await asyncio.sleep(
            max(0.0, started + index * plan.ramp_seconds / plan.streams - loop.time())
        )
        done: asyncio.Future[None] = loop.create_future()
        waiters.append(done)

        def factory(done: asyncio.Future[None] = done) -> _StreamClient:
            return _StreamClient(plan.request, result, done)

        try:
            await loop.create_connection(factory, "127.0.0.1", plan.port)
        except OSError:
            result.failed += 1
            done.set_result(None)
    _, pending = await asyncio.wait(waiters, timeout=plan.timeout_seconds)
    result.failed += len(pending)
    return result


def run_worker(plan: StreamPlan) -> WorkerResult:
    """One client process: open `plan.streams` streams over the ramp, read them all."""
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic()
    result = uvloop.run(_run_streams(plan))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_seconds = (usage.ru_utime - usage_before.ru_utime) + (
        usage.ru_stime - usage_before.ru_stime
    )
    result.wall_seconds = time.monotonic() - wall
    return result


def run(
    port: int,
    request: bytes,
    *,
    streams: int,
    processes: int,
    ramp_seconds: float,
    timeout_seconds: float,
    sample_rss_of: int | None = None,
) -> dict[str, Any]:
    """Run `streams` streams split over `processes` clients; sample RSS of a pid."""
    shares = [
        streams // processes + (1 if i < streams % processes else 0) for i in range(processes)
    ]
    plans = [StreamPlan(port, request, share, ramp_seconds, timeout_seconds) for share in shares]
    peak_rss = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        # Start the interpreters first so their import time is not part of the ramp.
        list(pool.map(_noop, range(processes)))
        futures = [pool.submit(run_worker, plan) for plan in plans]
        while not all(future.done() for future in futures):
            if sample_rss_of is not None:
                peak_rss = max(peak_rss, rss_kib(sample_rss_of))
            time.sleep(0.05)
        results = [future.result() for future in futures]
    return _merge(results, streams, peak_rss if sample_rss_of is not None else None)


def _noop(_: int) -> None:
    return None


def _merge(results: list[WorkerResult], streams: int, peak_rss: int | None) -> dict[str, Any]:
    def joined(pick: Callable[[WorkerResult], list[float]]) -> list[float]:
        return [value for result in results for value in pick(result)]

    chunks = sum(r.chunks for r in results)
    reads = sum(r.reads_with_chunks for r in results)
    merged = sum(r.merged_reads for r in results)
    transit = joined(lambda r: r.transit_ms)
    return {
        "streams": streams,
        "completed": sum(r.completed for r in results),
        "failed": sum(r.failed for r in results),
        "chunks": chunks,
        "ttfb_ms": summary(joined(lambda r: r.ttfb_ms)),
        "transit_ms": summary(transit),
        "gap_ms": summary(joined(lambda r: r.gap_ms)),
        "merged_reads": merged,
        "merged_read_share": merged / reads if reads else 0.0,
        "chunks_over_5ms_transit": sum(1 for value in transit if value > 5.0),
        "client_cpu_share": [
            round(r.cpu_seconds / r.wall_seconds, 3) if r.wall_seconds else 0.0 for r in results
        ],
        "peak_rss_kib": peak_rss,
    }
