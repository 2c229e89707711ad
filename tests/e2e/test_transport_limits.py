"""Transport limits against a running gateway in production mode, on raw sockets
(docs/SECURITY.md; server/protocol.py).

Timeouts are shortened through the settings (2 s) so the module stays fast; the
assertions allow for a loaded two-core machine: they bound from below by the timeout
itself and from above with seconds of slack, and the loop's responsiveness is judged
by the p99 of /healthz over hundreds of probes taken while the attack runs.
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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import audit_rows
from tests.support.processes import GatewayProcess
from tests.support.rawhttp import parse_response, raw_request
from tests.support.stack import start_gateway

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
SLACK = 3.0  # on top of a timeout, for a loaded machine
PROBE_SECONDS = HEADER_TIMEOUT + 1.5  # the attack's length: until the slowloris is closed
ROOT = Path(__file__).resolve().parents[2]
MODEL = "llama3.1:8b"
HUGE_HEADER = b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 << 20) + b"\r\n\r\n"


@pytest.fixture(scope="module")
def gateway(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    process = start_gateway(
        database_url,
        double,
        {
            "HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
            "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        },
    )
    yield process
    process.stop()


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after the answer is fine)."""
    chunks = []
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes `sock` (reading whatever it sends)."""
    started = time.monotonic()
    sock.settimeout(limit)
    read_all(sock)
    return time.monotonic() - started


def rss_mib(process: GatewayProcess) -> float:
    assert process.process is not None
    with open(f"/proc/{process.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Probe:
    """/healthz latencies from `bench.latency_probe` (a process of its own)."""

    def __init__(self, port: int, seconds: float) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.latency_probe", str(port), str(seconds)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )

    def latencies(self) -> list[float]:
        out, _ = self._process.communicate(timeout=60)
        assert self._process.returncode == 0
        return list(json.loads(out))


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


def in_threads(work: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=job) for job in work]
    for thread in threads:
        thread.start()
    return threads


def test_huge_headers_and_slowloris_neither_stall_the_loop_nor_hold_memory(
    gateway: GatewayProcess,
) -> None:
    port = gateway.port
    idle_rss = rss_mib(gateway)
    probe = Probe(port, PROBE_SECONDS)
    rss: list[float] = []

    answers: list[bytes] = []

    def huge_header() -> None:
        with connect(port, timeout=30) as sock:
            # The server closes once the limit is passed: the answer is waiting.
            with contextlib.suppress(OSError):
                sock.sendall(HUGE_HEADER)
            answers.append(read_all(sock))

    slow = [connect(port) for _ in range(200)]
    opened = time.monotonic()
    for sock in slow:
        sock.sendall(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
    closed_at: dict[int, float] = {}

    def drip() -> None:
        """One more header byte every half second on each open slowloris connection,
        noting when the server closed it (end of stream or reset)."""
        while len(closed_at) < len(slow) and time.monotonic() - opened < HEADER_TIMEOUT + 10:
            open_now = [sock for index, sock in enumerate(slow) if index not in closed_at]
            readable, _, _ = select.select(open_now, [], [], 0.5)
            for sock in readable:
                try:
                    ended = sock.recv(1024) == b""
                except OSError:
                    ended = True
                if ended:
                    closed_at[slow.index(sock)] = time.monotonic() - opened
            for index, sock in enumerate(slow):
                if index not in closed_at:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X")

    def sample_rss() -> None:
        while any(thread.is_alive() for thread in attackers):
            rss.append(rss_mib(gateway))
            time.sleep(0.05)

    attackers = in_threads([huge_header] * 8 + [drip])
    for thread in [*attackers, *in_threads([sample_rss])]:
        thread.join(timeout=60)
    for sock in slow:
        sock.close()
    latencies = probe.latencies()
    assert [parse_response(answer).status for answer in answers] == [431] * 8
    assert len(closed_at) == 200, "slowloris connections left open"
    assert min(closed_at.values()) >= HEADER_TIMEOUT - 0.1
    assert max(closed_at.values()) <= HEADER_TIMEOUT + SLACK
    assert len(latencies) > 100
    assert p99(latencies) < 0.050, f"p99 {p99(latencies) * 1000:.1f} ms"
    assert max(rss) - idle_rss < 50, f"idle {idle_rss:.0f} MiB, peak {max(rss):.0f} MiB"


def test_a_connection_that_sends_nothing_or_only_blank_lines_is_closed(
    gateway: GatewayProcess,
) -> None:
    with connect(gateway.port) as silent, connect(gateway.port) as blank:
        started = time.monotonic()

        def blank_lines() -> None:
            with contextlib.suppress(OSError):
                while time.monotonic() - started < HEADER_TIMEOUT + SLACK + 1:
                    blank.sendall(b"\r\n")
                    time.sleep(0.3)

        sender = in_threads([blank_lines])
        assert closed_after(silent, HEADER_TIMEOUT + SLACK) >= HEADER_TIMEOUT - 0.2
        assert time.monotonic() - started <= HEADER_TIMEOUT + SLACK
        assert closed_after(blank, HEADER_TIMEOUT + SLACK) <= HEADER_TIMEOUT + SLACK
        sender[0].join()


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/api/tags", "native"),
        ("/v1/models", "openai"),
        ("/v1/messages?beta=true", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
    ],
)
def test_a_header_section_past_the_limit_gets_431(
    gateway: GatewayProcess, path: str, shape: str
) -> None:
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
    with connect(gateway.port) as sock:
        sock.sendall(head + b"X-Big: " + b"a" * 40_000 + b"\r\n\r\n")  # one write
        answer = parse_response(read_all(sock))
    assert answer.status == 431
    assert answer.headers["connection"] == "close"
    assert answer.headers["x-request-id"] == answer.headers["x-gateway-request-id"]
    message = "request header fields too large (limit 32768 bytes)"
    body = json.loads(answer.body)
    if shape == "anthropic":  # docs/REFERENCE.md §12
        assert body == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": message},
        }
    else:
        assert (body["error"] if shape == "native" else body["error"]["message"]) == message


def test_a_header_section_within_the_limit_is_served(
    gateway: GatewayProcess, caller_secret: str
) -> None:
    answer = raw_request(
        gateway.port,
        "GET",
        "/api/tags",
        {"Authorization": f"Bearer {caller_secret}", "X-Padding": "p" * 30_000},
    )
    assert answer.status == 200


async def test_a_stalled_body_gets_408_and_is_audited(
    gateway: GatewayProcess, caller_secret: str, double: OllamaDouble, engine: AsyncEngine
) -> None:
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {caller_secret}\r\nX-Request-ID: stalled-body-1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()

    def stall() -> tuple[bytes, float]:
        with connect(gateway.port, timeout=BODY_TIMEOUT + SLACK) as sock:
            sock.sendall(head + body[:10].encode())
            started = time.monotonic()
            return read_all(sock), time.monotonic() - started

    raw, waited = await asyncio.to_thread(stall)
    answer = parse_response(raw)
    assert answer.status == 408
    assert BODY_TIMEOUT - 0.2 <= waited <= BODY_TIMEOUT + SLACK
    error = json.loads(answer.body)["error"]
    assert error["message"] == "request body not received in time"
    assert error["code"] == "request_timeout"
    assert answer.headers["x-request-id"] == "stalled-body-1"
    assert double.requests == []
    [row] = await audit_rows(engine, "stalled-body-1")
    assert (row.status_code, row.outcome) == (408, "client_error")


def test_a_slow_but_steady_body_is_not_cut(gateway: GatewayProcess, caller_secret: str) -> None:
    """The body timeout is between reads: a body that keeps coming may take longer."""
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    ).encode()
    head = (
        "POST /api/chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {caller_secret}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    pieces = [body[i : i + len(body) // 8 + 1] for i in range(0, len(body), len(body) // 8 + 1)]
    pause = BODY_TIMEOUT / 4  # each read well within the timeout, all of them well beyond
    with connect(gateway.port, timeout=30) as sock:
        sock.sendall(head)
        for piece in pieces:
            time.sleep(pause)
            sock.sendall(piece)
        answer = parse_response(read_all(sock))
    assert answer.status == 200


def test_a_large_body_in_the_same_read_as_small_headers_is_served(
    gateway: GatewayProcess, caller_secret: str
) -> None:
    padding = "x " * 50_000  # 100 kB of prompt, sent with the headers in one write
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": padding}], "stream": False}
    )
    answer = raw_request(
        gateway.port,
        "POST",
        "/api/chat",
        {"Authorization": f"Bearer {caller_secret}"},
        body.encode(),
    )
    assert answer.status == 200


# -- connections ------------------------------------------------------------------------

MAX_CONNECTIONS = 8


@pytest.fixture(scope="module")
def capped(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    process = start_gateway(
        database_url,
        double,
        {"MAX_CONNECTIONS": str(MAX_CONNECTIONS), "HEADER_TIMEOUT_SECONDS": "60"},
    )
    yield process
    process.stop()


def test_connections_past_the_cap_get_503_and_the_loop_serves_the_others(
    capped: GatewayProcess,
) -> None:
    healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(connect(capped.port)) for _ in range(MAX_CONNECTIONS)]
        for sock in idle:  # each accepted: not answered, not closed
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(1)
        with connect(capped.port) as extra:
            refused = parse_response(read_all(extra))
        assert refused.status == 503
        assert refused.headers["retry-after"] == "1"
        assert json.loads(refused.body) == {"error": "too many connections; retry shortly"}
        idle[0].sendall(healthz)  # the connections within the cap are served as before
        assert b" 200 " in read_all_until_answer(idle[0])
        idle.pop().close()
        answer = b""
        deadline = time.monotonic() + 10
        while b" 200 " not in answer:  # the refused connection lingers a moment at most
            assert time.monotonic() < deadline, answer
            with connect(capped.port) as again:
                again.sendall(healthz)
                answer = read_all_until_answer(again)


def read_all_until_answer(sock: socket.socket) -> bytes:
    """The first answer on `sock` (a keep-alive connection is not closed after it)."""
    sock.settimeout(5)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data
