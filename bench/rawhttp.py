"""Minimal HTTP/1.1 clients with the least overhead Python allows.

Requests are pre-rendered bytes; responses are parsed by httptools (C). Two flavours:
`BlockingConnection` for sequential latency (one keep-alive socket, no event loop in
the way; `send_sequentially` runs a batch on one) and `AsyncConnection` for open-loop
traffic on uvloop.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import httptools


def render_request(
    method: str,
    path: str,
    port: int,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of one keep-alive request to 127.0.0.1:`port`."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


@dataclass
class _Parsed:
    """What a response parser has collected so far."""

    body: list[bytes] = field(default_factory=list)
    complete: bool = False

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _ClosedBeforeAnswer(ConnectionError):
    """The connection was closed before any byte of an answer came back."""


class BlockingConnection:
    """One keep-alive connection used strictly sequentially.

    A server closes a keep-alive connection that stayed idle too long (uvicorn: 5 s),
    which happens to a target waiting for its turn while the others run a round on a
    busy machine. A request that found its connection closed that way, before any byte
    of an answer, is sent once more on a new connection (`reconnects` counts them)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self._port, self._timeout = port, timeout
        self.reconnects = 0
        self.sock = self._connect()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send `request`, read the whole response: (status, body)."""
        try:
            return self._exchange(request)
        except _ClosedBeforeAnswer:
            self.sock.close()
            self.sock = self._connect()
            self.reconnects += 1
            return self._exchange(request)

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            self.sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            raise _ClosedBeforeAnswer from None
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        received = False
        while not parsed.complete:
            try:
                data = self.sock.recv(262144)
            except ConnectionResetError:
                data = b""
            if not data:
                if not received:
                    raise _ClosedBeforeAnswer
                raise ConnectionError("server closed the connection")
            received = True
            parser.feed_data(data)
        return int(parser.get_status_code()), b"".join(parsed.body)

    def close(self) -> None:
        self.sock.close()


def send_sequentially(port: int, request: bytes, count: int, *, name: str, timeout: float) -> float:
    """Send `request` `count` times, one after another on one new keep-alive connection
    to `port`; raises RuntimeError naming `name` at the first status other than 200.
    Returns the wall time (s) from the first send to the connection's close."""
    connection = BlockingConnection(port, timeout=timeout)
    started = time.perf_counter()
    try:
        for _ in range(count):
            status, body = connection.exchange(request)
            if status != 200:
                raise RuntimeError(f"{name} answered {status}: {body[:200]!r}")
    finally:
        connection.close()
    return time.perf_counter() - started


class AsyncConnection(asyncio.Protocol):
    """A keep-alive connection for asyncio: one request at a time, awaited."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parsed = _Parsed()
        self._parser = httptools.HttpResponseParser(self._parsed)
        self._waiter: asyncio.Future[int] | None = None

    @classmethod
    async def open(cls, port: int) -> AsyncConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, "127.0.0.1", port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(error)
            return
        if self._parsed.complete and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(int(self._parser.get_status_code()))

    async def request(self, raw: bytes) -> int:
        """Send `raw`; the response's status once it is complete."""
        if self.transport is None or self.closed:
            raise ConnectionError("not connected")
        self._parsed = _Parsed()
        self._parser = httptools.HttpResponseParser(self._parsed)
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Idle keep-alive connections to one port, opened on demand."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: deque[AsyncConnection] = deque()
        self.opened = 0

    async def request(self, raw: bytes) -> int:
        connection = self.idle.pop() if self.idle else None
        if connection is None or connection.closed:
            connection = await AsyncConnection.open(self.port)
            self.opened += 1
        status = await connection.request(raw)
        if not connection.closed:
            self.idle.append(connection)
        return status

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
