"""One keep-alive HTTP/1.1 connection to an upstream, reading one response at a time.

The protocol side of `proxy.http_client` (docs/UPSTREAMS.md, "The forwarding client").
httptools parses the response; its body arrives as the bytes each socket read carried,
for the relay to send on at once. Three rules hold for every response:

- **Bounded memory.** Reading pauses while more than `high_water` bytes wait for the
  consumer (a slow client holds back its own stream, not the gateway's memory).
- **Read timeout.** A response that goes silent for `read_timeout` seconds fails with
  `TimeoutError`; time spent paused for a slow consumer does not count.
- **Clear failures.** A connection lost or a malformed answer before the status line is
  `NoResponse` (nothing came back: another server may be tried); after it,
  `BrokenResponse`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
from typing import cast

import httptools

# Reading stops while this much of an answer waits for the consumer, and goes on once
# it is taken.
HIGH_WATER = 256 * 1024


class UpstreamError(Exception):
    """The exchange with an upstream failed (no connection, or a broken answer)."""


class ConnectFailed(UpstreamError):
    """No connection: refused, unreachable, or not made within the connect timeout."""


class PoolExhausted(UpstreamError):
    """Every connection this process may open is in use, and none came free within the
    connect timeout: the gateway is at its own limit, not the server."""


class NoResponse(UpstreamError):
    """The connection closed, or sent something that is not HTTP, before a status line."""


class BrokenResponse(UpstreamError):
    """The answer broke off or became malformed after its status line."""


class Connection(asyncio.Protocol):
    """A connection and the response being read on it (at most one at a time).

    `on_lost` is called once when the connection is gone, however it went; `pool_key`
    is the owner's name for where the connection goes (its idle pool)."""

    # What is known of the response being read (`_new_response` forgets it).
    status: int
    headers: dict[str, str]
    _buffered: int
    _headers_done: bool
    _complete: bool
    _keep_alive: bool
    _length_known: bool
    _received: bool
    _error: BaseException | None

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read_timeout: float,
        on_lost: Callable[[Connection], None],
        pool_key: Hashable,
        high_water: int = HIGH_WATER,
    ) -> None:
        self.pool_key = pool_key
        self._high_water = high_water
        self._loop = loop
        self._read_timeout = read_timeout
        self._on_lost = on_lost
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._reported_lost = False
        # Loop time this connection went back to the pool (idle keep-alive).
        self.idle_since = 0.0
        self._chunks: deque[bytes] = deque()
        self._paused = False
        self._active = False
        self._waiter: asyncio.Future[None] | None = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._new_response()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection

    def data_received(self, data: bytes) -> None:
        if not self._active:  # an idle connection has nothing to say: not HTTP we trust
            self.close()
            return
        self._received = True
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(BrokenResponse() if self._headers_done else NoResponse())
            return
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._active and not self._complete and self._error is None:
            if not self._headers_done:
                self._error = NoResponse()
            elif self._length_known:
                self._error = BrokenResponse()
            else:  # no length and not chunked: the body ends with the connection
                self._complete = True
        self._stop_timer()
        self._wake()
        self._gone()

    def pause_writing(self) -> None:  # requests are written whole; nothing to hold back
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        known = self.headers.get(key)
        self.headers[key] = text if known is None else f"{known}, {text}"

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        headers = self.headers
        self._length_known = (
            "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()
        )
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > self._high_water and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self._complete = True
        # Asked here: once feed_data returns, the parser has reset for the next message.
        self._keep_alive = self._parser.should_keep_alive()

    # -- the exchange -------------------------------------------------------------------

    def send(self, request: bytes) -> None:
        """Write one request; its response is read next (`wait_head`, `chunk`)."""
        if self.transport is None or self.closed:
            raise NoResponse()
        if self._paused:  # the last response was left unread while reading was paused
            self._paused = False
            self.transport.resume_reading()
        self._new_response()
        self._active = True
        self._last_read = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(
                self._last_read + self._read_timeout, self._check_timeout
            )
        self.transport.write(request)

    @property
    def received_nothing(self) -> bool:
        """True while not one byte of the current response came back."""
        return not self._received

    async def wait_head(self) -> None:
        """Return once the status line and headers are in; raise what broke them."""
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def chunk(self) -> bytes:
        """The body bytes received since the last call (waiting for some); b"" at the end."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self._last_read = self._loop.time()
                    self.transport.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            await self._wait()

    @property
    def reusable(self) -> bool:
        """The response was read to its end and the connection may carry another."""
        return self._complete and not self.closed and self._error is None and self._keep_alive

    def finish(self) -> None:
        """The current response is done with (the connection goes idle or is closed).

        The read timer stays armed: it finds nothing to time out when it fires, and a
        next request on this connection needs no timer of its own."""
        self._active = False

    def close(self) -> None:
        """Close the connection (for an upstream still generating, this stops it)."""
        self._active = False
        self._shut()

    # -- internals ----------------------------------------------------------------------

    def _new_response(self) -> None:
        """Forget the last response: what is known of the next one is nothing yet."""
        self.status = 0
        self.headers = {}
        self._chunks.clear()
        self._buffered = 0
        self._headers_done = False
        self._complete = False
        self._keep_alive = False
        self._length_known = False
        self._received = False
        self._error = None

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake()
        self._shut()

    def _shut(self) -> None:
        """Close the transport and count the connection gone now (its `connection_lost`
        comes a loop iteration later)."""
        self._stop_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        self._gone()

    def _gone(self) -> None:
        if not self._reported_lost:
            self._reported_lost = True
            self._on_lost(self)

    def _check_timeout(self) -> None:
        # One timer per connection, re-armed to the last read instead of per read.
        self._timer = None
        if not self._active or self._complete:
            return
        due = self._last_read + self._read_timeout
        if self._paused or self._loop.time() < due:
            base = self._loop.time() if self._paused else self._last_read
            self._timer = self._loop.call_at(base + self._read_timeout, self._check_timeout)
            return
        self._fail(TimeoutError())

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
