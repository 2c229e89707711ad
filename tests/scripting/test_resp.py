"""The limiter's pipelined Redis client: replies in order, failures as `RespError`,
reconnection, AUTH and SELECT — against real Redis servers."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator

import hiredis
import pytest

from neuronetz_gateway.scripting.resp import RedisAddress, RespClient, RespError, pack
from tests.support.databases import REDIS_URL
from tests.support.processes import free_port
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
async def client() -> AsyncIterator[RespClient]:
    opened = RespClient(REDIS_URL)
    yield opened
    await opened.aclose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, None, None, None, 0, False)),
        ("redis://h", ("h", 6379, None, None, None, 0, False)),
        ("redis://:s%40cret@h:7000/5", ("h", 7000, None, None, "s@cret", 5, False)),
        ("rediss://user:pw@h:6380/1", ("h", 6380, None, "user", "pw", 1, True)),
        ("unix:///run/redis.sock?db=2", ("", 0, "/run/redis.sock", None, None, 2, False)),
    ],
)
def test_url_parsing(url: str, expected: tuple[object, ...]) -> None:
    address = RedisAddress.from_url(url)
    assert (
        address.host,
        address.port,
        address.path,
        address.username,
        address.password,
        address.db,
        address.tls,
    ) == expected


def test_pack_is_resp2() -> None:
    assert pack(("SET", b"k", "v\r\n")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"


async def test_concurrent_commands_each_get_their_own_reply(client: RespClient) -> None:
    replies = await asyncio.gather(*(client.execute("ECHO", str(i)) for i in range(500)))
    assert replies == [str(i).encode() for i in range(500)]


async def test_error_replies_are_values_not_exceptions(client: RespClient) -> None:
    reply = await client.execute("EVALSHA", "0" * 40, "0")
    assert isinstance(reply, hiredis.ReplyError)
    assert str(reply).startswith("NOSCRIPT")
    assert await client.execute("PING") == b"PONG"


async def test_unreachable_server_fails_fast() -> None:
    dead = RespClient(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RespError):
        await dead.execute("PING")
    assert loop.time() - started < 1.0


async def test_a_late_reply_never_reaches_another_caller() -> None:
    """A server that answers the first command too late: the client gives up on the
    connection, so the late answer cannot be taken as the reply to the next command."""
    connections = 0

    async def slow_then_fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first_connection = connections == 1
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if first_connection:
                    await asyncio.sleep(0.5)  # the server side of the test: deliberately late
                writer.write(b"+LATE\r\n" if b"LATE" in data else b"+OK\r\n")
        writer.close()

    server = await asyncio.start_server(slow_then_fast, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    impatient = RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        with pytest.raises(RespError):
            await impatient.execute("ECHO", "LATE")
        assert await impatient.execute("PING") == b"OK"
        assert connections == 2
    finally:
        await impatient.aclose()
        server.close()
        await server.wait_closed()


async def test_dropped_connection_fails_waiters_then_reconnects() -> None:
    proxy = TcpProxy("127.0.0.1", 6379)
    port = await proxy.start()
    through = RespClient(f"redis://127.0.0.1:{port}/0")
    try:
        assert await through.execute("PING") == b"PONG"
        blocked = asyncio.ensure_future(through.execute("BLPOP", "nz:test:never", "5"))
        await asyncio.sleep(0)  # let the command go out before the cut
        proxy.cut()
        with pytest.raises(RespError):
            await blocked
        with pytest.raises(RespError):
            await through.execute("PING")
        proxy.restore()
        assert await through.execute("PING") == b"PONG"
    finally:
        await through.aclose()
        await proxy.aclose()


@pytest.fixture
def protected_redis() -> Iterator[int]:
    """A Redis server of its own that requires a password."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="nzgw-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "s3cret",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


async def _until_up(url: str) -> RespClient:
    client = RespClient(url)
    for _ in range(100):
        try:
            await client.execute("PING")
            return client
        except RespError:
            await asyncio.sleep(0.05)  # the server is still starting: nothing to await
    raise AssertionError("redis-server did not start")


async def test_auth_and_select(protected_redis: int) -> None:
    client = await _until_up(f"redis://:s3cret@127.0.0.1:{protected_redis}/3")
    try:
        assert await client.execute("SET", "nz:test", "db3") == b"OK"
        assert await client.execute("CLIENT", "INFO") != b""
        info = await client.execute("CLIENT", "INFO")
        assert isinstance(info, bytes)
        assert b"db=3" in info
    finally:
        await client.aclose()
    wrong = RespClient(f"redis://:wrong@127.0.0.1:{protected_redis}/0")
    with pytest.raises(RespError):
        await wrong.execute("PING")
    missing = RespClient(f"redis://127.0.0.1:{protected_redis}/0")
    reply = await missing.execute("PING")
    assert isinstance(reply, hiredis.ReplyError)
    assert str(reply).startswith("NOAUTH")
    await missing.aclose()


async def test_each_command_has_its_own_deadline_on_a_shared_connection() -> None:
    """One timer watches the connection: a command sent after an earlier one was
    answered gets the full timeout from its own sending, and still fails when late."""

    async def answer_late_to_late(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if b"LATE" in data:
                    await asyncio.sleep(0.6)  # the server side of the test: deliberately late
                writer.write(b"+OK\r\n")
        writer.close()

    server = await asyncio.start_server(answer_late_to_late, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RespClient(f"redis://127.0.0.1:{port}/0", timeout=0.4)
    loop = asyncio.get_running_loop()
    try:
        assert await client.execute("PING") == b"OK"  # arms the timer for its deadline
        await asyncio.sleep(0.25)  # the next command's deadline is past the first one's
        sent = loop.time()
        assert await client.execute("PING") == b"OK"
        with pytest.raises(RespError, match="did not answer in time"):
            await client.execute("ECHO", "LATE")
        assert loop.time() - sent >= 0.4
        assert await client.execute("PING") == b"OK"  # a new connection
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
