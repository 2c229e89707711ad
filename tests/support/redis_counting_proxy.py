"""A TCP proxy in front of Redis that counts the commands its clients send, by name.

It reads the client side as RESP arrays (`*N` then N bulk strings), so pipelined
commands count one by one. Only traffic through the proxy is counted: other clients of
the shared Redis do not disturb a measurement. Runs in its own thread and event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class RedisCountingProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 6379) -> None:
        self.target = (target_host, target_port)
        self.commands: Counter[str] = Counter()
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.commands)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(shutdown()))
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.target)
        self._writers.update((client_w, server_w))
        back = asyncio.create_task(_pipe(server_r, client_w))
        try:
            while True:
                raw, name = await _read_command(client_r)
                with self._lock:
                    self.commands[name] += 1
                server_w.write(raw)
                await server_w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            back.cancel()
            server_w.close()
            client_w.close()
            self._writers.difference_update((client_w, server_w))


async def _read_command(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    header = await reader.readuntil(b"\r\n")
    if not header.startswith(b"*"):
        raise ValueError("inline commands are not expected from redis-py")
    parts = [header]
    name = ""
    for index in range(int(header[1:-2])):
        length_line = await reader.readuntil(b"\r\n")
        data = await reader.readexactly(int(length_line[1:-2]) + 2)
        parts += [length_line, data]
        if index == 0:
            name = data[:-2].decode("latin-1").upper()
    return b"".join(parts), name


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextmanager
def redis_counting_proxy() -> Iterator[RedisCountingProxy]:
    proxy = RedisCountingProxy()
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
