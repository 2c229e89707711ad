"""A TCP proxy in front of Postgres that counts query round trips per connection.

It speaks just enough of the Postgres wire protocol to read each client message's type
and length: every `Sync` (extended protocol) or `Query` (simple protocol) message is one
round trip. Connections are labelled with the `application_name` of their startup
message, so a test can tell the gateway's LISTEN connection from its query pool.
The gateway connects to `url()`.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from contextlib import AbstractContextManager

from sqlalchemy.engine import make_url

from tests.support.threaded_proxy import ThreadedTcpProxy, pipe, running

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104


class PostgresCountingProxy(ThreadedTcpProxy):
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        super().__init__(target_host, target_port)
        self.round_trips: Counter[str] = Counter()
        self.connections: Counter[str] = Counter()

    def url(self, database_url: str) -> str:
        """`database_url` rewritten to go through this proxy."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.round_trips)

    async def _handle(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        server_r: asyncio.StreamReader,
        server_w: asyncio.StreamWriter,
    ) -> None:
        back: asyncio.Task[None] | None = None
        try:
            label = await self._startup(client_r, server_w, server_r, client_w)
            # Only now: during start-up this task reads the server's one-byte SSL answer.
            back = asyncio.create_task(pipe(server_r, client_w))
            with self._lock:
                self.connections[label] += 1
            while True:
                header = await client_r.readexactly(5)
                kind, length = header[:1], struct.unpack("!I", header[1:])[0]
                payload = await client_r.readexactly(length - 4)
                if kind in (b"S", b"Q"):
                    with self._lock:
                        self.round_trips[label] += 1
                server_w.write(header + payload)
                await server_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if back is not None:
                back.cancel()

    async def _startup(
        self,
        client_r: asyncio.StreamReader,
        server_w: asyncio.StreamWriter,
        server_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
    ) -> str:
        while True:
            length = struct.unpack("!I", await client_r.readexactly(4))[0]
            body = await client_r.readexactly(length - 4)
            code = struct.unpack("!I", body[:4])[0]
            server_w.write(struct.pack("!I", length) + body)
            await server_w.drain()
            if code not in (SSL_REQUEST, GSS_REQUEST):
                return _application_name(body[4:])
            # The server answers 'N' (no encryption) with one byte; relay it, then the
            # real startup message follows.
            client_w.write(await server_r.readexactly(1))
            await client_w.drain()


def _application_name(parameters: bytes) -> str:
    parts = parameters.split(b"\x00")
    pairs = dict(zip(parts[0::2], parts[1::2], strict=False))
    return pairs.get(b"application_name", b"").decode() or "pool"


def counting_proxy() -> AbstractContextManager[PostgresCountingProxy]:
    return running(PostgresCountingProxy())
