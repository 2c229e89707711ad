"""`UpstreamClient`: the forwarding client against scripted HTTP servers on loopback.

Each server is a real socket that answers with exact bytes, so every way an upstream
can answer (lengths, chunks, EOF, silence, garbage, closing) is played as written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from neuronetz_gateway.proxy.http_client import (
    UpstreamClient,
)
from neuronetz_gateway.proxy.http_connection import (
    HIGH_WATER,
    BrokenResponse,
    ConnectFailed,
    NoResponse,
    PoolExhausted,
)
from tests.support.processes import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Script"], Awaitable[None]]
# Starts a scripted upstream with a handler: its base URL and what it saw.
StartUpstream = Callable[[Handler], Awaitable[tuple[str, "Script"]]]


@dataclass
class Script:
    """A scripted upstream: what it received, and how many connections it saw."""

    handler: Handler
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader, script: Script) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    script.requests.append(head + body)
    return head + body


@pytest.fixture
async def upstream() -> AsyncIterator[StartUpstream]:
    servers: list[asyncio.Server] = []
    scripts: list[Script] = []

    async def start(handler: Handler) -> tuple[str, Script]:
        script = Script(handler)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            script.connections += 1
            script.writers.append(writer)
            try:
                await script.handler(reader, writer, script)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()
                script.closed.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        scripts.append(script)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}", script

    yield start
    for server in servers:
        server.close()
    for script in scripts:
        for writer in script.writers:
            writer.close()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    running = UpstreamClient(connect_timeout=2.0, read_timeout=2.0, max_connections=8)
    yield running
    await running.aclose()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra) + body


async def keep_answering(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
) -> None:
    while True:
        await read_request(reader, script)
        writer.write(ok(b'{"done":true}', b"content-type: application/json\r\n"))
        await writer.drain()


async def test_a_whole_answer_is_read_and_the_connection_reused(
    upstream: StartUpstream, client: UpstreamClient
) -> None:
    base, script = await upstream(keep_answering)
    for _ in range(3):
        response = await client.request("POST", base, "/api/chat", {"x-a": "1"}, b'{"m":1}')
        async with response:
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"done":true}'
    assert script.connections == 1
    assert client.open_connections == 1
    assert script.requests[0].startswith(b"POST /api/chat HTTP/1.1\r\n")
    assert b"\r\ncontent-length: 7\r\n" in script.requests[0]
    assert script.requests[0].endswith(b'\r\n\r\n{"m":1}')


async def test_the_base_path_and_host_are_those_of_the_base_url(
    upstream: StartUpstream, client: UpstreamClient
) -> None:
    base, script = await upstream(keep_answering)
    response = await client.request("GET", base + "/ollama", "/api/tags", {})
    await response.read()
    response.release()
    request = script.requests[0]
    assert request.startswith(b"GET /ollama/api/tags HTTP/1.1\r\n")
    assert f"\r\nhost: {base.removeprefix('http://')}\r\n".encode() in request
    assert b"content-length" not in request  # a GET has no body


async def test_a_stream_arrives_chunk_by_chunk_as_sent(
    upstream: StartUpstream, client: UpstreamClient
) -> None:
    async def stream(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b'6\r\n{"a"}\n\r\n')
        await writer.drain()
        await script.go.wait()  # the second chunk only once the first was received
        writer.write(b'6\r\n{"b"}\n\r\n0\r\n\r\n')
        await writer.drain()
        await reader.read()

    base, script = await upstream(stream)
    response = await client.request("POST", base, "/api/chat", {}, b"{}")
    assert await response.chunk() == b'{"a"}\n'
    script.go.set()
    assert await response.chunk() == b'{"b"}\n'
    assert await response.chunk() == b""
    response.release()
    assert client.open_connections == 1  # read to its end: kept


async def test_a_body_without_length_ends_with_the_connection(
    upstream: StartUpstream, client: UpstreamClient
) -> None:
    async def until_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")

    base, _ = await upstream(until_close)
    response = await client.request("GET", base, "/api/version", {})
    assert await response.read() == b"all of it"
    response.release()
    assert client.open_connections == 0


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(b"", NoResponse, id="closed-before-status"),
        pytest.param(b"SSH-2.0-OpenSSH\r\n\r\n", NoResponse, id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\ncontent-le", NoResponse, id="cut-in-headers"),
    ],
)
async def test_nothing_usable_before_the_status_line_is_no_response(
    upstream: StartUpstream,
    client: UpstreamClient,
    answer: bytes,
    error: type[Exception],
) -> None:
    async def broken(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        writer.write(answer)
        await writer.drain()

    base, _ = await upstream(broken)
    with pytest.raises(error):
        await client.request("POST", base, "/api/chat", {}, b"{}")
    assert client.open_connections == 0


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"content-length: 10\r\n\r\nshort", id="short-body"),
        pytest.param(b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", id="no-last-chunk"),
        pytest.param(b"transfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n", id="bad-chunk-size"),
    ],
)
async def test_an_answer_broken_after_its_status_line_is_broken_response(
    upstream: StartUpstream,
    client: UpstreamClient,
    answer: bytes,
) -> None:
    async def broken(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        writer.write(b"HTTP/1.1 200 OK\r\n" + answer)
        await writer.drain()

    base, _ = await upstream(broken)
    response = await client.request("POST", base, "/api/chat", {}, b"{}")
    with pytest.raises(BrokenResponse):
        await response.read()
    response.release()
    assert client.open_connections == 0


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    upstream: StartUpstream, client: UpstreamClient
) -> None:
    async def once_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        writer.write(ok(b"first"))
        await writer.drain()
        # Closes without telling (no `connection: close`): the client's idle connection
        # is dead, which it may only learn when it writes the next request.

    base, script = await upstream(once_per_connection)
    for _ in range(3):
        response = await client.request("POST", base, "/api/chat", {}, b"{}")
        assert await response.read() == b"first"
        response.release()
        await script.closed.wait()
        script.closed.clear()
    assert script.connections == 3
    assert len(script.requests) == 3  # every request was received exactly once


async def test_silence_past_the_read_timeout_is_a_timeout(
    upstream: StartUpstream,
) -> None:
    async def silent_after_head(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        if len(script.requests) == 2:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            await writer.drain()
        await reader.read()

    client = UpstreamClient(connect_timeout=1.0, read_timeout=0.2, max_connections=4)
    try:
        base, _ = await upstream(silent_after_head)
        with pytest.raises(TimeoutError):  # no status line
            await client.request("POST", base, "/api/chat", {}, b"{}")
        response = await client.request("POST", base, "/api/chat", {}, b"{}")
        with pytest.raises(TimeoutError):  # no body
            await response.chunk()
        response.close()
    finally:
        await client.aclose()


async def test_a_refused_connection_is_connect_failed(client: UpstreamClient) -> None:
    with pytest.raises(ConnectFailed):
        await client.request("GET", f"http://127.0.0.1:{free_port()}", "/api/version", {})
    assert client.open_connections == 0


async def test_closing_a_response_closes_its_connection_upstream(
    upstream: StartUpstream, client: UpstreamClient
) -> None:
    async def endless(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        assert await reader.read() == b""  # EOF: the client hung up

    base, script = await upstream(endless)
    response = await client.request("POST", base, "/api/chat", {}, b"{}")
    assert await response.chunk() == b"abc"
    response.close()
    await script.closed.wait()
    response.release()  # after close: nothing more happens
    assert client.open_connections == 0


async def test_a_consumer_that_does_not_read_stops_the_reading(
    upstream: StartUpstream, client: UpstreamClient
) -> None:
    size = 16 * 1024 * 1024
    payload = bytes(range(256)) * (size // 256)
    blocked = asyncio.Event()

    async def flood(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        await read_request(reader, script)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for start in range(0, size, 65536):
            writer.write(payload[start : start + 65536])
        # Most of it is still in this process: the client stopped taking it.
        while writer.transport.get_write_buffer_size() > size // 2:
            blocked.set()
            await asyncio.sleep(0.01)
        await writer.drain()

    base, _ = await upstream(flood)
    response = await client.request("POST", base, "/api/chat", {}, b"{}")
    async with asyncio.timeout(10):
        await blocked.wait()
    first = await response.chunk()
    assert len(first) <= HIGH_WATER + 256 * 1024
    assert first + await response.read() == payload
    response.release()


async def test_the_connection_limit_makes_requests_wait_their_turn(
    upstream: StartUpstream,
) -> None:
    client = UpstreamClient(connect_timeout=2.0, read_timeout=2.0, max_connections=1)
    try:
        base, script = await upstream(keep_answering)
        first = await client.request("POST", base, "/api/chat", {}, b"{}")
        second = asyncio.create_task(client.request("POST", base, "/api/chat", {}, b"{}"))
        await asyncio.sleep(0)  # the second is waiting for the only connection
        assert not second.done()
        assert await first.read() == b'{"done":true}'
        first.release()
        response = await second
        assert await response.read() == b'{"done":true}'
        response.release()
        assert script.connections == 1
    finally:
        await client.aclose()


async def test_waiting_for_a_connection_is_bounded_by_the_connect_timeout(
    upstream: StartUpstream,
) -> None:
    client = UpstreamClient(connect_timeout=0.2, read_timeout=2.0, max_connections=1)
    try:
        base, _ = await upstream(keep_answering)
        held = await client.request("POST", base, "/api/chat", {}, b"{}")
        with pytest.raises(PoolExhausted):
            await client.request("POST", base, "/api/chat", {}, b"{}")
        held.close()
    finally:
        await client.aclose()


def test_a_closed_client_refuses_requests() -> None:
    async def run() -> None:
        client = UpstreamClient(connect_timeout=1.0, read_timeout=1.0, max_connections=1)
        await client.aclose()
        with pytest.raises(RuntimeError):
            await client.request("GET", "http://127.0.0.1:1", "/", {})

    asyncio.run(run())


async def test_a_connection_released_unread_while_paused_reads_the_next_answer(
    upstream: StartUpstream,
) -> None:
    # A small read buffer: the whole first answer arrives in the read that pauses
    # the reading, so the connection is complete, paused, and reusable at once.
    client = UpstreamClient(
        connect_timeout=2.0, read_timeout=2.0, max_connections=2, read_buffer_bytes=1024
    )

    async def big_then_small(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, script: Script
    ) -> None:
        while True:
            await read_request(reader, script)
            writer.write(ok(b"x" * 4096 if len(script.requests) == 1 else b"small"))
            await writer.drain()

    try:
        base, script = await upstream(big_then_small)
        first = await client.request("POST", base, "/api/chat", {}, b"{}")
        first.release()  # its body never read
        second = await client.request("POST", base, "/api/chat", {}, b"{}")
        assert await second.read() == b"small"
        second.release()
        assert script.connections == 1
    finally:
        await client.aclose()
