"""Messages from other replicas' scripts: one pub/sub subscription per process.

A script that grants a slot to a request waiting on another replica publishes
`<waiter id> <server id>` on that replica's channel; a script that queues a request
publishes its server ids on the busy channel (docs/SCHEDULING.md). Subscribing
needs a connection of its own (a subscribed connection can send no other command), so
this is the one connection the scheduler opens from `REDIS_URL` itself. Classic pub/sub
reaches every node of a Redis Cluster, so the seed node of `REDIS_URL` serves there too.

A wake-up lost while the subscription is down costs at most one tick: `on_subscribed`
runs after every (re)subscription, and the tick reports each waiter's fate anyway. A
lost busy message is bounded by `TAKEOVER_MAX_SECONDS` (scheduler/releases.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence

import hiredis
import structlog

from neuronetz_gateway.scripting.resp import RedisAddress, pack

log = structlog.get_logger(__name__)

RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 2.0


class _Subscriber(asyncio.Protocol):
    def __init__(
        self, on_message: Callable[[bytes, bytes], None], on_subscribed: Callable[[], None]
    ) -> None:
        self._reader = hiredis.Reader()
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # stream sockets only

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, hiredis.ReplyError):
                log.error("queue_subscription_refused", error=str(reply))
                if self.transport is not None:
                    self.transport.abort()
                return
            if isinstance(reply, list) and len(reply) == 3:
                channel, payload = reply[1], reply[2]
                if reply[0] == b"message" and isinstance(payload, bytes):
                    self._on_message(channel, payload)
                elif reply[0] == b"subscribe":
                    self._on_subscribed()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def subscribe_forever(
    redis_url: str,
    channels: Sequence[str],
    on_message: Callable[[bytes, bytes], None],
    on_subscribed: Callable[[], None],
) -> None:
    """Keep a subscription to `channels` open until cancelled, reconnecting with a
    back-off; `on_message` gets each channel and payload, `on_subscribed` runs on every
    (re)subscription (once per channel)."""
    address = RedisAddress.from_url(redis_url)
    delay = RECONNECT_MIN_SECONDS
    while True:
        transport: asyncio.Transport | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                protocol = await _open(address, on_message, on_subscribed)
            transport = protocol.transport
            if transport is None:  # pragma: no cover - set by connection_made
                raise OSError("no transport")
            if address.password is not None:
                auth = (
                    ("AUTH", address.username, address.password)
                    if address.username
                    else (
                        "AUTH",
                        address.password,
                    )
                )
                transport.write(pack(auth))
            transport.write(pack(("SUBSCRIBE", *channels)))
            delay = RECONNECT_MIN_SECONDS
            await protocol.closed
            log.warning("queue_subscription_lost")
        except (OSError, TimeoutError) as error:
            log.warning("queue_subscription_failed", error=type(error).__name__)
        finally:
            if transport is not None:
                transport.abort()
        await asyncio.sleep(delay)
        delay = min(RECONNECT_MAX_SECONDS, delay * 2)


async def _open(
    address: RedisAddress,
    on_message: Callable[[bytes, bytes], None],
    on_subscribed: Callable[[], None],
) -> _Subscriber:
    loop = asyncio.get_running_loop()
    if address.path is not None:
        _, protocol = await loop.create_unix_connection(
            lambda: _Subscriber(on_message, on_subscribed), address.path
        )
        return protocol
    context = ssl.create_default_context() if address.tls else None
    _, protocol = await loop.create_connection(
        lambda: _Subscriber(on_message, on_subscribed), address.host, address.port, ssl=context
    )
    return protocol
