"""A TCP proxy in front of Redis that counts the commands its clients send, by name.

It reads the client side as RESP arrays (`*N` then N bulk strings), so pipelined
commands count one by one. Only traffic through the proxy is counted: other clients of
the shared Redis do not disturb a measurement.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AbstractContextManager

from tests.support.threaded_proxy import ThreadedTcpProxy, pipe, running


class RedisCountingProxy(ThreadedTcpProxy):
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 6379) -> None:
        super().__init__(target_host, target_port)
        self.commands: Counter[str] = Counter()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.commands)

    async def _handle(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        server_r: asyncio.StreamReader,
        server_w: asyncio.StreamWriter,
    ) -> None:
        back = asyncio.create_task(pipe(server_r, client_w))
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


def redis_counting_proxy() -> AbstractContextManager[RedisCountingProxy]:
    return running(RedisCountingProxy())
