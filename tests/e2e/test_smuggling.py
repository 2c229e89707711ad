"""Request smuggling and malformed framing (REFERENCE.md §4.7): ambiguous requests are refused by
the HTTP layer, nothing smuggled behind them is executed, and Ollama never sees either."""

from __future__ import annotations

import socket

import pytest

from tests.doubles.ollama import OllamaDouble
from tests.support.processes import GatewayProcess

SMUGGLED = b"POST /api/pull HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


def exchange(port: int, payload: bytes, timeout: float = 3.0) -> bytes:
    """Send raw bytes; return everything the server answered until it closed or went quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def statuses(raw: bytes) -> list[int]:
    return [
        int(line.split()[1])
        for line in raw.split(b"\r\n")
        if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit()
    ]


CASES = {
    "cl-and-te": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-and-cl": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 80\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "duplicate-cl": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 79\r\n\r\n"
        + SMUGGLED
    ),
    "te-obfuscated": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n" + SMUGGLED
    ),
    "te-with-space": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
        + SMUGGLED
    ),
    "obs-fold": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        b" Transfer-Encoding: chunked\r\n\r\n" + SMUGGLED
    ),
    "bare-lf-in-header": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nX-A: 1\nContent-Length: 0\r\n\r\n" + SMUGGLED
    ),
    "negative-cl": b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + SMUGGLED,
    "nul-in-header": b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "huge-header": b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 200_000 + b"\r\n\r\n",
    "bad-chunk-size": (
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\n{}\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ambiguous_framing_never_smuggles(
    gateway: GatewayProcess, double: OllamaDouble, name: str
) -> None:
    raw = exchange(gateway.port, CASES[name])
    codes = statuses(raw)
    # Refused outright, or answered once as what it declares (401: no key) — never a
    # second response for the smuggled request, never a 2xx.
    assert all(code in (400, 401, 403, 413, 431) for code in codes), (name, raw[:300])
    assert len(codes) <= 1, (name, raw[:500])
    assert not any(r.path == "/api/pull" for r in double.requests)
    assert double.requests == []


def test_gateway_survives_the_abuse(gateway: GatewayProcess) -> None:
    raw = exchange(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [200]
