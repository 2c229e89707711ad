"""The forwarding client: pooled keep-alive HTTP/1.1 to the upstreams (docs/UPSTREAMS.md).

Every forwarded request goes through one `UpstreamClient` per process. It does what
forwarding needs and nothing else (no cookies, redirects, proxies from the environment
or decompression: `proxy.forward` asks for identity and refuses anything else), which
makes it several times cheaper per request than a general-purpose client
(docs/PERFORMANCE.md). Its contract:

- `request` writes the request in one write and returns once the status line and
  headers are in. `ConnectFailed`: no connection within `connect_timeout`.
  `PoolExhausted`: all `max_connections` stayed in use for `connect_timeout` (the wait
  and the connect share that time). `NoResponse`: nothing came back. `TimeoutError`:
  silent for `read_timeout`. A pooled connection that the server closed while it was
  idle is not a failure: the request goes out once more on a new one (nothing was
  received, so nothing was processed twice).
- The body is read with `UpstreamResponse.chunk` (what each read brought), `read` or
  `read_prefix`. After the status line, failures are `BrokenResponse` or `TimeoutError`.
- `release` returns a fully read connection to the pool; `close` closes it, which stops
  an upstream that is still generating. Idle connections are reused newest first and
  closed once idle for `IDLE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from neuronetz_gateway.proxy.http_connection import (
    HIGH_WATER,
    ConnectFailed,
    Connection,
    NoResponse,
    PoolExhausted,
)

# Idle keep-alive connections older than this are closed instead of reused (the server
# may be about to close them itself).
IDLE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a base URL's requests go: host and port to connect to, TLS or not, the
    `Host` header, and the base URL's path, put before every request path."""

    host: str
    port: int
    tls: bool
    host_header: str
    prefix: str


def parse_origin(base_url: str) -> Origin:
    """The `Origin` of an `http://` or `https://` base URL (ValueError otherwise)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an upstream must be an http:// or https:// URL with a host")
    tls = parts.scheme == "https"
    default = 443 if tls else 80
    port = parts.port or default
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    return Origin(host, port, tls, host_header, parts.path.rstrip("/"))


def request_head(
    method: str, origin: Origin, path: str, headers: dict[str, str], body: bytes | None
) -> bytes:
    """The request line and headers; ValueError for a header that could split them."""
    lines = [f"{method} {origin.prefix}{path} HTTP/1.1\r\nhost: {origin.host_header}\r\n"]
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError("a header may not contain a line break")
        lines.append(f"{name}: {value}\r\n")
    if body is not None:
        lines.append(f"content-length: {len(body)}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("a header must be latin-1 text") from None


class UpstreamResponse:
    """A response whose status line and headers are in (header names lower-case)."""

    __slots__ = ("_client", "_connection", "_done", "headers", "status")

    def __init__(self, client: UpstreamClient, connection: Connection) -> None:
        self._client = client
        self._connection = connection
        self._done = False
        self.status = connection.status
        self.headers = connection.headers

    async def chunk(self) -> bytes:
        """The body bytes that arrived since the last call (waiting for some); b"" at the end."""
        return await self._connection.chunk()

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self._connection.chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_prefix(self, limit: int) -> bytes:
        """The body's first `limit` bytes (fewer if it is shorter)."""
        parts: list[bytes] = []
        size = 0
        while size < limit and (chunk := await self._connection.chunk()):
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:limit]

    def release(self) -> None:
        """Done with the response: the connection goes back to the pool when it was read
        to its end, else it is closed. Idempotent."""
        if not self._done:
            self._done = True
            self._client._give_back(self._connection)

    def close(self) -> None:
        """Close the connection (stops an upstream still generating). Idempotent."""
        if not self._done:
            self._done = True
            self._connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class UpstreamClient:
    """Pooled connections to any number of upstreams, at most `max_connections` open;
    reading an answer pauses while `read_buffer_bytes` of it wait for the consumer."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        read_buffer_bytes: int = HIGH_WATER,
    ) -> None:
        self._read_buffer_bytes = read_buffer_bytes
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._origins: dict[str, Origin] = {}
        self._idle: dict[Hashable, list[Connection]] = {}
        self._open: set[Connection] = set()
        # Reserved for connections being made, so that the limit holds during a connect.
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def request(
        self,
        method: str,
        base_url: str,
        path: str,
        headers: dict[str, str],
        body: bytes | None = None,
    ) -> UpstreamResponse:
        """Send a request to the server at `base_url`; its response, headers read."""
        if self._closed:
            raise RuntimeError("the upstream client is closed")
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = parse_origin(base_url)
        head = request_head(method, origin, path, headers, body)
        message = head if not body else head + body
        connection, pooled = await self._acquire(origin, reuse=True)
        if pooled:
            try:
                return await self._exchange(connection, message)
            except NoResponse:
                if not connection.received_nothing:
                    raise
                # Closed by the server while idle, as we wrote: a new connection.
            connection, _ = await self._acquire(origin, reuse=False)
        return await self._exchange(connection, message)

    async def aclose(self) -> None:
        """Close every connection; later requests raise RuntimeError."""
        self._closed = True
        for connection in list(self._open):
            connection.close()
        self._idle.clear()

    # -- connections --------------------------------------------------------------------

    async def _exchange(self, connection: Connection, message: bytes) -> UpstreamResponse:
        try:
            connection.send(message)
            await connection.wait_head()
        except BaseException:
            connection.close()
            raise
        return UpstreamResponse(self, connection)

    def _take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_kept = asyncio.get_running_loop().time() - IDLE_SECONDS
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= oldest_kept:
                return connection
            connection.close()
        return None

    def _give_back(self, connection: Connection) -> None:
        connection.finish()
        if not connection.reusable or self._closed:
            connection.close()
            return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.setdefault(connection.pool_key, []).append(connection)
        self._wake_one()

    async def _acquire(self, origin: Origin, *, reuse: bool) -> tuple[Connection, bool]:
        """A connection to `origin` and whether it came from the pool: an idle one
        (when `reuse`), else a new one once the limit allows, within the connect timeout."""
        if reuse and (idle := self._take_idle(origin)) is not None:
            return idle, True
        waited = False
        try:
            async with asyncio.timeout(self._connect_timeout):
                while not self._may_open():
                    waited = True
                    await self._wait_turn()
                    waited = False
                    if reuse and (idle := self._take_idle(origin)) is not None:
                        return idle, True
                return await self._connect(origin), False
        except (OSError, TimeoutError, ssl.SSLError):
            self._wake_one()  # the turn this request had goes to the next in line
            if waited:
                raise PoolExhausted() from None
            raise ConnectFailed() from None

    def _may_open(self) -> bool:
        if len(self._open) + self._connecting < self._max_connections:
            return True
        return self._close_oldest_idle()

    async def _wait_turn(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        self._connecting += 1
        try:
            _, connection = await loop.create_connection(
                lambda: Connection(
                    loop, self._read_timeout, self._lost, origin, self._read_buffer_bytes
                ),
                origin.host,
                origin.port,
                ssl=self._tls() if origin.tls else None,
                server_hostname=origin.host if origin.tls else None,
            )
        finally:
            self._connecting -= 1
        _no_delay(connection)
        if self._closed:
            connection.close()
            raise RuntimeError("the upstream client is closed")
        self._open.add(connection)
        return connection

    def _close_oldest_idle(self) -> bool:
        oldest: Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.pool_key].remove(oldest)
        oldest.close()  # counted out at once (`_lost`)
        return True

    def _lost(self, connection: Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context


def _no_delay(connection: Connection) -> None:
    """Requests and small answers go out at once (no Nagle delay)."""
    transport = connection.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
