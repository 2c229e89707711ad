"""A flood of invented keys from one client leaves the failure budget to the others
(auth/throttle.py, docs/SECURITY.md "Wrong keys and the failure budget").

Clients are told apart the way a deployment sees them: the gateway trusts a proxy on
127.0.0.1 (`TRUSTED_PROXY_IPS`) and each request names its client in
`X-Forwarded-For` (documentation addresses; no traffic goes there). The budget is 8
failures with next to no refill, so each client's share is 4 and nothing comes back
while the test runs.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.auth.keys import BASE62, KEY_SCHEME, PREFIX_ALPHABET, SECRET_CHARS, checksum
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models
from tests.support.factories import make_key, make_tenant
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

FLOODER = "203.0.113.5"
SHARE = 4  # half of AUTH_FAILURE_BURST
CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture  # each test starts with the whole budget
def gateway(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    env = {
        "TRUSTED_PROXY_IPS": "127.0.0.1",
        "AUTH_FAILURE_BURST": str(2 * SHARE),
        "AUTH_FAILURES_PER_SECOND": "0.0001",
    }
    process = start_gateway(database_url, double, env)
    yield process
    process.stop()


@pytest.fixture
async def client(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        yield client


def invented_key() -> str:
    """A well-formed key (valid checksum) under a random prefix."""
    prefix = KEY_SCHEME + "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(8))
    body = prefix + "".join(secrets.choice(BASE62) for _ in range(SECRET_CHARS))
    return body + checksum(body)


async def chat(client: httpx.AsyncClient, key: str, address: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-For": address}
    return await client.post("/api/chat", json=CHAT, headers=headers)


def chats(double: OllamaDouble) -> list[object]:
    """What reached Ollama's chat (the gateway's start-up discovery is not counted)."""
    return [seen for seen in double.requests if seen.raw_path == "/api/chat"]


async def new_key(session: AsyncSession) -> str:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    return (await make_key(session, tenant.name)).secret


async def test_one_flooding_client_leaves_the_budget_to_the_others(
    client: httpx.AsyncClient, session: AsyncSession, double: OllamaDouble
) -> None:
    flood = [await chat(client, invented_key(), FLOODER) for _ in range(2 * SHARE)]
    key = await new_key(session)
    from_the_flooder = await chat(client, key, FLOODER)
    from_another_client = await chat(client, key, "198.51.100.7")

    assert [r.status_code for r in flood] == [401] * SHARE + [503] * SHARE
    assert from_the_flooder.status_code == 503  # its share is spent: the key was not checked
    assert from_the_flooder.json()["error"].startswith("too many failed authentication")
    assert from_another_client.status_code == 200
    assert len(chats(double)) == 1


async def test_a_flood_from_many_clients_still_spends_the_process_budget(
    client: httpx.AsyncClient, session: AsyncSession, double: OllamaDouble
) -> None:
    """The share bounds one client, not a distributed flood: the process's own budget
    (what keeps Argon2 from taking the CPU) is the last word."""
    flooders = [f"192.0.2.{n}" for n in range(1, 3)]
    statuses = [
        (await chat(client, invented_key(), address)).status_code
        for address in flooders
        for _ in range(SHARE)
    ]
    key = await new_key(session)
    fresh_client = await chat(client, key, "198.51.100.99")

    assert statuses == [401] * 2 * SHARE
    assert fresh_client.status_code == 503
    assert chats(double) == []


async def test_many_right_keys_of_one_client_never_wait_for_its_share(
    client: httpx.AsyncClient, session: AsyncSession, double: OllamaDouble
) -> None:
    """A service holding its customers' keys presents many new keys at once from one
    address: its share pays for failures only, so more of them than the share are
    verified together (the process's budget is taken and given back)."""
    keys = [await new_key(session) for _ in range(SHARE + 2)]

    responses = await asyncio.gather(*(chat(client, key, "198.51.100.20") for key in keys))

    assert [r.status_code for r in responses] == [200] * len(keys)
    assert len(chats(double)) == len(keys)
