"""A loopback TCP proxy that tests can cut, to take a dependency away from ONE client.

Shared servers (Postgres, Redis) stay up for everyone else; only connections through
the proxy fail. `cut()` closes every proxied connection and refuses new ones until
`restore()`. `sabotage(trigger)` breaks the next connection whose client sends bytes
containing `trigger`: either before forwarding them (the server never sees them) or
after the server has answered them, with the answer withheld from the client — the
"COMMIT was applied but its acknowledgement was lost" case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

CHUNK = 65536


@dataclass
class _Sabotage:
    trigger: bytes
    after_reply: bool
    fired: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    doomed: _Sabotage | None = None

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.refused = 0
        self.port = 0
        self._refusing = False
        self._links: set[_Link] = set()
        self._sabotage: _Sabotage | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen on a free loopback port; returns it (also as `port`)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def cut(self) -> None:
        """Break every open connection and refuse new ones."""
        self._refusing = True
        for link in list(self._links):
            link.close()

    def restore(self) -> None:
        self._refusing = False

    def sabotage(self, trigger: bytes, *, after_reply: bool) -> asyncio.Event:
        """Break the next connection that sends `trigger`; the event is set when it did."""
        self._sabotage = _Sabotage(trigger, after_reply)
        return self._sabotage.fired

    async def aclose(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.refused += 1
            writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            writer.close()
            return
        link = _Link(client=writer, server=server_writer)
        self._links.add(link)
        upstream = self._spawn(self._client_to_server(reader, link))
        downstream = self._spawn(self._server_to_client(server_reader, link))
        await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        link.close()
        self._links.discard(link)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _client_to_server(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                plan = self._sabotage
                if plan is not None and plan.trigger in data:
                    self._sabotage = None
                    if not plan.after_reply:
                        plan.fired.set()
                        return
                    link.doomed = plan
                link.server.write(data)
                await link.server.drain()

    async def _server_to_client(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(CHUNK):
                if link.doomed is not None:
                    # The server has processed the trigger (e.g. committed): withhold it.
                    link.doomed.fired.set()
                    return
                link.client.write(data)
                await link.client.drain()
