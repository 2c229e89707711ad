"""A small pipelined Redis client for scripts on the hot path (the limiter's, the queue's).

redis-py spends ~250 µs of CPU per `EVALSHA` with the limiter's 14 keys and ~30
arguments (connection pool, command packing, retry and observability layers); this
client spends ~50 µs (docs/PERFORMANCE.md). It does one thing: send RESP2 commands on
one connection, pipelined, and hand each caller the reply to its command in order
(Redis answers in order). Replies are parsed by hiredis.

Failure rules, all ending in `RespError` for the caller (the limiter fails closed):
- connecting fails or takes longer than the timeout;
- a reply does not arrive within the timeout: the connection is closed, because any
  later reply on it would go to the wrong caller; every caller waiting on it fails.
  Replies come in order, so only the oldest command's deadline needs watching: one
  timer per connection (re-armed when it fires), not one per command;
- the connection drops: every caller waiting on it fails.
The next command connects again. A Redis error reply (`-ERR ...`) is returned as a
`hiredis.ReplyError` value, not raised: callers decide (NOSCRIPT, for one).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

import hiredis

Reply = object
DEFAULT_TIMEOUT_SECONDS = 1.0
# How long a deferred command (one nobody is waiting on: a settlement, a slot's release)
# may wait for company. A write to a socket is a system call that costs more CPU on a
# virtual machine than the rest of a script run; a deferred command usually goes out
# in the same write as the next request's admission (docs/PERFORMANCE.md).
DEFERRED_FLUSH_SECONDS = 0.002
# Script arguments repeat (limits, lease lengths, server ids, tenants): each one's
# packing is kept, so most arguments cost a dict lookup. Emptied when full.
PACKED_CACHE_SIZE = 4096
PACKED_CACHE_ITEM_BYTES = 256
_PACKED: dict[bytes | str | int, bytes] = {}


class RespError(Exception):
    """The command's fate is unknown or it was never sent: Redis is unreachable."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect, from a `redis://`, `rediss://` or `unix://` URL."""

    host: str
    port: int
    path: str | None
    username: str | None
    password: str | None
    db: int
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("unsupported Redis URL scheme")
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        if parts.scheme == "unix":
            db = int(query.get("db", "0"))
            path, host, port = parts.path, "", 0
        else:
            db = int(parts.path.lstrip("/") or query.get("db", "0"))
            path, host, port = None, parts.hostname or "127.0.0.1", parts.port or 6379
        return cls(
            host=host,
            port=port,
            path=path,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=db,
            tls=parts.scheme == "rediss",
        )


def pack_items(items: Sequence[bytes | str | int]) -> bytes:
    """Bulk strings in RESP2, without the array header (so parts can be cached);
    integers are sent as their decimal text, as Redis expects them."""
    cache = _PACKED
    out = []
    for item in items:
        packed = cache.get(item)
        if packed is None:
            packed = _pack_item(item)
            if len(packed) <= PACKED_CACHE_ITEM_BYTES:  # not a script's source
                if len(cache) >= PACKED_CACHE_SIZE:
                    cache.clear()
                cache[item] = packed
        out.append(packed)
    return b"".join(out)


def _pack_item(item: bytes | str | int) -> bytes:
    if isinstance(item, str):
        data = item.encode()
    elif isinstance(item, int):
        data = b"%d" % item
    else:
        data = item
    return b"$%d\r\n%b\r\n" % (len(data), data)


def pack(args: Sequence[bytes | str]) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    return b"*%d\r\n" % len(args) + pack_items(args)


class _Connection(asyncio.Protocol):
    """One connection: writes commands, pairs replies with waiters in order, and closes
    when the oldest command's reply is overdue."""

    def __init__(self, timeout: float) -> None:
        self._reader = hiredis.Reader()
        self._waiters: deque[asyncio.Future[Reply]] = deque()
        self._deadlines: deque[float] = deque()  # the loop's clock, one per waiter
        self._timeout = timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._outgoing: list[bytes] = []
        self._flush_soon = False  # a flush is queued for this turn of the loop
        self._flush_timer: asyncio.TimerHandle | None = None  # deferred commands only
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # stream sockets only

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self._waiters:
                self.close()  # a reply nobody asked for: the stream is out of step
                return
            waiter = self._waiters.popleft()
            self._deadlines.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail_all(RespError("connection to Redis lost"))

    def send(self, payload: bytes, *, deferred: bool = False) -> asyncio.Future[Reply]:
        """Queue `payload`; commands sent in one turn of the loop go out in one write.
        `deferred`: it may wait up to `DEFERRED_FLUSH_SECONDS` for the next command
        (and goes out with it, in order). The future fails with `RespError` if the
        reply is not there within the timeout."""
        if self.lost or self._transport is None:
            raise RespError("not connected to Redis")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Reply] = loop.create_future()
        deadline = loop.time() + self._timeout
        self._waiters.append(waiter)
        self._deadlines.append(deadline)
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._check_deadline)
        self._outgoing.append(payload)
        if not deferred:
            if not self._flush_soon:
                self._flush_soon = True
                loop.call_soon(self._flush)
        elif self._flush_timer is None and not self._flush_soon:
            self._flush_timer = loop.call_later(DEFERRED_FLUSH_SECONDS, self._flush)
        return waiter

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._deadlines or self.lost:
            return
        oldest = self._deadlines[0]
        loop = asyncio.get_running_loop()
        if oldest <= loop.time():
            # Later replies on this connection would reach the wrong callers.
            self._fail_all(RespError("Redis did not answer in time"))
            self.close()
        else:
            self._watchdog = loop.call_at(oldest, self._check_deadline)

    def _fail_all(self, error: RespError) -> None:
        self._deadlines.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _flush(self) -> None:
        self._flush_soon = False
        if self._flush_timer is not None:
            self._flush_timer.cancel()  # whichever came first sends everything queued
            self._flush_timer = None
        outgoing, self._outgoing = self._outgoing, []
        if outgoing and self._transport is not None and not self.lost:
            self._transport.write(b"".join(outgoing) if len(outgoing) > 1 else outgoing[0])

    def close(self) -> None:
        # Lost from now on (the transport reports it only on a later loop turn), so no
        # new command is sent on a connection that is going away.
        self.lost = True
        if self._transport is not None:
            self._transport.abort()


class RespClient:
    """Pipelined commands on one connection; see the module docstring for failures."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._address = RedisAddress.from_url(url)
        self._timeout = timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, *args: bytes | str) -> Reply:
        """Send one command and return its reply (error replies included)."""
        return await self.execute_packed(len(args), pack_items(args))

    async def execute_packed(self, count: int, *parts: bytes, deferred: bool = False) -> Reply:
        """Send one command of `count` arguments given as already packed bulk strings
        (`pack_items`), so a caller can reuse the packing of arguments that repeat.
        `deferred`: nobody waits on it, so it may wait a little for company (the
        module's `DEFERRED_FLUSH_SECONDS`)."""
        connection = self._connection
        if connection is None or connection.lost:
            connection = await self._connect()
        payload = b"*%d\r\n%b" % (count, b"".join(parts))
        return await connection.send(payload, deferred=deferred)

    def send_packed(self, count: int, *parts: bytes) -> asyncio.Future[Reply] | None:
        """`execute_packed` queued now (RedisCommands); None while not connected."""
        connection = self._connection
        if connection is None or connection.lost:
            return None
        return connection.send(b"*%d\r\n%b" % (count, b"".join(parts)))

    async def execute_adjacent(self, *commands: bytes) -> list[Reply]:
        """Send whole commands (each from `pack`) back to back, with no command of any
        other caller in between, and return their replies in order. For pairs that
        must be adjacent on the connection: Redis Cluster's ASKING and its command."""
        connection = self._connection
        if connection is None or connection.lost:
            connection = await self._connect()
        waiters = [connection.send(command) for command in commands]
        return list(await asyncio.gather(*waiters))

    async def aclose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def _connect(self) -> _Connection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            current = self._connection
            if current is not None and not current.lost:
                return current  # another caller connected while we waited
            try:
                async with asyncio.timeout(self._timeout):
                    connection = await self._open()
                    await self._handshake(connection)
            except (OSError, TimeoutError, RespError) as error:
                raise RespError(f"cannot connect to Redis ({type(error).__name__})") from None
            self._connection = connection
            return connection

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        address = self._address
        if address.path is not None:
            _, connection = await loop.create_unix_connection(
                lambda: _Connection(self._timeout), address.path
            )
            return connection
        context = ssl.create_default_context() if address.tls else None
        _, connection = await loop.create_connection(
            lambda: _Connection(self._timeout), address.host, address.port, ssl=context
        )
        return connection

    async def _handshake(self, connection: _Connection) -> None:
        address = self._address
        commands: list[tuple[str, ...]] = []
        if address.password is not None and address.username:
            commands.append(("AUTH", address.username, address.password))
        elif address.password is not None:
            commands.append(("AUTH", address.password))
        if address.db:
            commands.append(("SELECT", str(address.db)))
        for command in commands:
            reply = await connection.send(pack(command))
            if isinstance(reply, hiredis.ReplyError):
                connection.close()
                raise RespError(f"{command[0]} refused")
