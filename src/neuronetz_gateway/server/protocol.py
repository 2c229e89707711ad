"""uvicorn's httptools protocol with the gateway's transport limits (docs/SECURITY.md).

Measured on uvicorn 0.54 + httptools 0.9: the header section has no size limit (a
header's pieces are joined with `bytes +=`, so one 64 MB header held the event loop
for seconds and eight unfinished 48 MB ones took 400 MB), and neither the headers nor
the body have a read timeout (a slowloris connection stays open for ever, and so does
one that never sends the first byte). This subclass adds, per connection
(`TransportLimits`, from the settings):

- **header bytes**: once the reads of one header section (request line included) add
  up to more than MAX_HEADER_BYTES: 431, and the connection is closed. Checked per
  read, so at most one read (≤ 256 KiB) more is ever parsed. (A request pipelined
  behind another in the same read is charged that whole read.)
- **header timeout**: a connection must complete a header section within
  HEADER_TIMEOUT_SECONDS of being opened, and of its first read that did not complete
  one (idle keep-alive connections are uvicorn's `timeout_keep_alive`); otherwise it is
  closed without an answer.
- **body timeout**: while a request's body is incomplete, each read must follow the
  previous one within BODY_TIMEOUT_SECONDS (not counting time in which the gateway
  itself stopped reading). Then the gateway's next `receive()` raises a 408
  `GatewayError`, which the pipeline answers in the surface's shape and audits; if the
  response has started already, the connection is closed.
- **connections**: beyond MAX_CONNECTIONS open in this process a new connection gets
  503 with `Retry-After` at once and is closed; nothing of it is parsed.

Refusals written here (431, 503) carry a request id like every response, are counted in
`neuronetz_transport_refusals_total{reason}` and logged, but not audited: no request
reached the gateway. After writing one, the connection lingers for up to
LINGER_SECONDS, discarding what the client still sends (up to LINGER_BYTES), so that
closing does not reset the connection before the client has read the answer.

Cost on the hot path: a request that arrives in one read (the common case) arms no
timer; a connection arms one for its first request; a few attribute checks per read.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import structlog
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGIReceiveEvent
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from neuronetz_gateway.errors import GatewayError, error_body, surface_of_path
from neuronetz_gateway.ids import random_hex
from neuronetz_gateway.observability import metrics
from neuronetz_gateway.outcome import Outcome
from neuronetz_gateway.server.limits import TransportLimits

log = structlog.get_logger(__name__)

LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
# Enough of the request path to tell its surface (`/v1/messages/count_tokens` is 26).
SURFACE_PATH_BYTES = 64

REASONS = ("header_too_large", "header_timeout", "body_timeout", "too_many_connections")
_REFUSALS = {reason: metrics.TRANSPORT_REFUSALS.labels(reason) for reason in REASONS}


def request_timeout() -> GatewayError:
    """What the app's `receive()` raises once the request body has stalled (408)."""
    return GatewayError(
        408,
        "request body not received in time",
        Outcome.CLIENT_ERROR,
        code="request_timeout",
        headers={"connection": "close"},
    )


class GatewayHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, within `TransportLimits` (the app's `transport_limits`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn wraps the app only for TRACE logging or its own proxy headers, both
        # off in `serve`; under such a wrapper the defaults apply.
        self.limits: TransportLimits = getattr(self.app, "transport_limits", TransportLimits())
        self._in_headers = False  # between a message's first byte and its headers' end
        self._header_bytes = 0  # the reads of the current header section before this one
        self._read_bytes = 0  # the read being parsed
        self._oversized = False  # a header section completed past the limit
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_read_at = 0.0
        self._timed_out: RequestResponseCycle | None = None
        self._discarded: int | None = None  # lingering after a refusal: bytes dropped

    # -- the connection -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn: its transports are Transports
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "too many connections; retry shortly", "too_many_connections")
            return
        self._header_timer = self.loop.call_later(
            self.limits.header_timeout_seconds, self._header_timed_out
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarded is not None:  # lingering after a refusal
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        self._read_bytes = len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._oversized:
            self._header_too_large()
            return
        cycle = self.cycle
        if self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._header_too_large()
                return
            self._start_header_timer()
        elif cycle is None or cycle.response_complete:
            # Bytes that started no request (blank lines), or the unread rest of an
            # answered request's body: the next header section is due all the same.
            self._start_header_timer()
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self._body_read_at = self.loop.time()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(
                    self.limits.body_timeout_seconds, self._body_timed_out
                )

    # -- parser callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        limit = self.limits.max_header_bytes
        # Exact only when the cheap bound (every read of the section, whole) is past it.
        if self._header_bytes + self._read_bytes > limit and self._section_bytes() > limit:
            self._oversized = True  # its cycle is made but never run (_start_asgi_task)
        super().on_headers_complete()

    def _section_bytes(self) -> int:
        """The size of the header section just parsed: request line and header lines."""
        request_line = len(self.parser.get_method()) + len(self.url) + len(" HTTP/1.1\r\n") + 1
        return request_line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if self._oversized:
            return  # answered with 431 once the read is parsed
        # The app must learn of a stalled body where it waits for it: in `receive()`.
        cycle.receive = functools.partial(self._receive, cycle, cycle.receive)  # type: ignore[method-assign]  # per request, see _receive
        super()._start_asgi_task(cycle, app)

    async def _receive(
        self, cycle: RequestResponseCycle, receive: ASGIReceiveCallable
    ) -> ASGIReceiveEvent:
        """uvicorn's `receive()`, raising the 408 once `cycle`'s body has stalled."""
        message = await receive()
        if self._timed_out is cycle and not cycle.response_started:
            raise request_timeout()
        return message

    # -- the limits -------------------------------------------------------------------

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.limits.header_timeout_seconds, self._header_timed_out
            )

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self._note("header_timeout")
            self.transport.close()

    def _header_too_large(self) -> None:
        if self._oversized:  # its cycle is queued if an earlier one is still answering
            answering = bool(self.pipeline)
        else:
            answering = self.cycle is not None and not self.cycle.response_complete
        if answering:
            # Pipelined behind a request still being answered: no room for an answer.
            self._note("header_too_large")
            self.transport.close()
            return
        limit = self.limits.max_header_bytes
        self._refuse(
            431, f"request header fields too large (limit {limit} bytes)", "header_too_large"
        )

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if (
            cycle is None
            or not cycle.more_body
            or cycle.response_complete
            or self.transport.is_closing()
        ):
            return
        timeout = self.limits.body_timeout_seconds
        now = self.loop.time()
        if self.flow.read_paused:  # the gateway is not reading: not the client's doing
            self._body_read_at = now
        idle = now - self._body_read_at
        if idle < timeout:
            self._body_timer = self.loop.call_later(timeout - idle, self._body_timed_out)
            return
        self._note("body_timeout")
        if cycle.response_started:
            self.transport.close()
            return
        self._timed_out = cycle
        cycle.keep_alive = False
        cycle.message_event.set()

    def _refuse(self, status: int, message: str, reason: str) -> None:
        """Answer `status` in the error shape of the request's surface, then linger."""
        self._note(reason)
        self._cancel_timers()
        # The surface's shape once a request target was read (uvicorn's `url`).
        target: bytes = getattr(self, "url", b"")
        path = target.split(b"?", 1)[0][:SURFACE_PATH_BYTES]
        surface = surface_of_path(path.decode("latin-1"))
        body = error_body(surface, status, message)
        request_id = random_hex().encode()
        self.transport.write(
            b"".join(
                (
                    STATUS_LINE[status],
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"retry-after: 1\r\n" if status == 503 else b"",
                    b"connection: close\r\n",
                    b"x-request-id: " + request_id + b"\r\n",
                    b"x-gateway-request-id: " + request_id + b"\r\n\r\n",
                    body,
                )
            )
        )
        self._discarded = 0
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _note(self, reason: str) -> None:
        _REFUSALS[reason].inc()
        log.info("transport_refused", reason=reason, client=self.client[0] if self.client else None)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None
