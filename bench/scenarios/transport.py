"""Transport limits (server/protocol.py): what they cost, and what they hold off.

- `cost`: uvicorn's stock httptools protocol and the gateway's subclass serve the same
  keep-alive requests in this process, over an in-memory transport, to a trivial app:
  the CPU time per request of each, interleaved in rounds. The difference is the
  limits' cost on the hot path, measured without the network and the pipeline around
  it (both of which the other scenarios include).
- `attack`: against the running gateway: 8 connections sending a 64 MB header and 200
  slowloris connections (one header byte every half second) at once, while a probe
  process asks /healthz every 5 ms: its latency, the answers to the huge headers, how
  many slowloris connections were closed and when, and the gateway's RSS
  (`bench.latency_probe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvloop
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bench.processes import rss_kib
from neuronetz_gateway.server.protocol import GatewayHttpProtocol

ROOT = Path(__file__).resolve().parents[2]
GET = b"GET /api/tags HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer nz_x\r\n\r\n"
BODY = b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * 900 + b'"}]}'
POST = (
    b"POST /api/chat HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)
ANSWER = b'{"ok":true}'


async def _app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        more = True
        while more:
            more = (await receive()).get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(ANSWER)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": ANSWER})


class _MemoryTransport(asyncio.Transport):
    """Enough of a TCP transport for the protocol: writes are counted and dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


async def _serve(protocol_class: type[HttpToolsProtocol], reads: list[bytes], count: int) -> float:
    """CPU seconds per request for `count` requests, each arriving as `reads`."""
    config = Config(_app, lifespan="off", access_log=False, log_config=None)
    config.load()
    protocol = protocol_class(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    transport = _MemoryTransport()
    protocol.connection_made(transport)
    started = time.process_time()
    for _ in range(count):
        for data in reads:
            protocol.data_received(data)
        while not protocol.cycle.response_complete:  # noqa: ASYNC110 - one loop turn per step, the same for both protocols
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    protocol.connection_lost(None)
    return elapsed / count


def cost(count: int, rounds: int = 4) -> dict[str, Any]:
    """µs per request of the stock protocol and the gateway's, per request shape."""
    shapes = {
        "GET, one read": [GET],
        "POST 1 kB, one read": [POST + BODY],
        "POST 1 kB, headers and body in two reads": [POST, BODY],
    }
    protocols: dict[str, type[HttpToolsProtocol]] = {
        "uvicorn httptools": HttpToolsProtocol,
        "gateway (limits)": GatewayHttpProtocol,
    }
    out: dict[str, Any] = {}
    for shape, reads in shapes.items():
        samples: dict[str, list[float]] = {name: [] for name in protocols}
        for _ in range(rounds):
            for name, protocol_class in protocols.items():
                per_request = uvloop.run(_serve(protocol_class, reads, count))
                samples[name].append(per_request * 1e6)
        medians = {name: round(statistics.median(values), 2) for name, values in samples.items()}
        stock, limited = medians.values()
        out[shape] = medians | {"difference_us": round(limited - stock, 2)}
    return out


# -- the attack -------------------------------------------------------------------------


def attack(
    port: int, pid: int, *, huge: int = 8, slowloris: int = 200, seconds: float = 12.0
) -> dict[str, Any]:
    """The attack of the module docstring for `seconds`; what the gateway did."""
    idle_rss = rss_kib(pid)
    probe = subprocess.Popen(
        [sys.executable, "-m", "bench.latency_probe", str(port), str(seconds)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    payload = b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 << 20) + b"\r\n\r\n"
    answers: list[str] = []

    def send_huge() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            started = time.monotonic()
            with contextlib.suppress(OSError):
                sock.sendall(payload)
            with contextlib.suppress(OSError):
                first = sock.recv(64)
                answers.append(
                    f"{first[9:12].decode() or 'closed'} after {time.monotonic() - started:.2f} s"
                )

    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(slowloris)]
    opened = time.monotonic()
    for sock in slow:
        sock.sendall(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
    closed_at: dict[int, float] = {}
    peak_rss = idle_rss

    def drip() -> None:
        nonlocal peak_rss
        while time.monotonic() - opened < seconds and len(closed_at) < len(slow):
            peak_rss = max(peak_rss, rss_kib(pid))
            alive = [s for i, s in enumerate(slow) if i not in closed_at]
            readable, _, _ = select.select(alive, [], [], 0.5)
            for sock in readable:
                with contextlib.suppress(OSError):
                    if sock.recv(1024):
                        continue
                closed_at[slow.index(sock)] = time.monotonic() - opened
            for index, sock in enumerate(slow):
                if index not in closed_at:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X")

    threads = [threading.Thread(target=send_huge) for _ in range(huge)]
    threads.append(threading.Thread(target=drip))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    for sock in slow:
        sock.close()
    out, _ = probe.communicate(timeout=seconds + 60)
    latencies = sorted(json.loads(out))
    closed = sorted(closed_at.values())
    return {
        "healthz_ms": {
            "n": len(latencies),
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p99": round(statistics.quantiles(latencies, n=100)[98] * 1000, 2),
            "max": round(latencies[-1] * 1000, 2),
        },
        "huge_headers": answers,
        "slowloris_closed": len(closed),
        "slowloris_open": len(slow) - len(closed),
        "slowloris_closed_after_s": [round(closed[0], 2), round(closed[-1], 2)] if closed else [],
        "rss_mib": {"idle": round(idle_rss / 1024, 1), "peak": round(peak_rss / 1024, 1)},
    }
