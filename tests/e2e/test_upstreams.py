"""Several Ollama servers behind one gateway (docs/REFERENCE.md §4.7, §4.8; docs/UPSTREAMS.md).

Three doubles, each with a model of its own and one they share, behind a real gateway
process on a database of this module's own (its discovery would otherwise mark the
other modules' models unavailable).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.db.engine import create_engine, session_factory
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models
from tests.e2e.test_models import grant
from tests.support.databases import create_migrated_database, drop_database
from tests.support.factories import make_key, make_tenant
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

SHARED = "shared:1b"
OWN = ("alpha:1b", "beta:1b", "gamma:1b")  # one per server, in OLLAMA_BASE_URLS order


@dataclass(frozen=True)
class Servers:
    doubles: tuple[OllamaDouble, OllamaDouble, OllamaDouble]

    def label(self, index: int) -> str:
        return f"127.0.0.1:{self.doubles[index].port}"

    def calls(self, path: str) -> list[int]:
        """How many requests for `path` each double received."""
        return [sum(r.path == path for r in d.requests) for d in self.doubles]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    first, second, third = (OllamaDouble(models=[own, SHARED]) for own in OWN)
    running = Servers((first, second, third))
    for double in running.doubles:
        double.start()
    yield running
    for double in running.doubles:
        double.stop()


@pytest.fixture(scope="module")
def upstreams_database_url() -> Iterator[str]:
    url = create_migrated_database("upstreams")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def gateway(upstreams_database_url: str, servers: Servers) -> Iterator[GatewayProcess]:
    first = servers.doubles[0]
    urls = ",".join(d.base_url for d in servers.doubles)
    env = {
        "OLLAMA_BASE_URLS": urls,
        "READINESS_TIMEOUT_SECONDS": "1",
        "UPSTREAM_CONNECT_TIMEOUT_SECONDS": "1",
    }
    process = start_gateway(upstreams_database_url, first, env)
    yield process
    process.stop()


@pytest.fixture
async def db(upstreams_database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(upstreams_database_url)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


@pytest.fixture
async def client(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as running:
        yield running


@pytest.fixture
async def auth(db: AsyncSession, client: httpx.AsyncClient) -> dict[str, str]:
    """A key that may use every model, already known to the gateway: of a burst of
    first requests with a key it has not indexed yet, the authenticator looks up only
    two and refuses the rest (auth/authenticator.py), which is not what these tests
    are about."""
    tenant = await make_tenant(db)
    await allow_all_models(db, tenant.id)
    key = await make_key(db, tenant.name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    assert (await client.get("/api/tags", headers=headers)).status_code == 200
    return headers


async def samples(client: httpx.AsyncClient, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples called `name` the gateway's /metrics shows, with their labels."""
    text = (await client.get("/metrics")).text
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def upstream_up(client: httpx.AsyncClient) -> dict[str, float]:
    """`neuronetz_upstream_up` by server label."""
    return {
        labels["upstream"]: value
        for labels, value in await samples(client, "neuronetz_upstream_up")
    }


async def wait_until_up(
    client: httpx.AsyncClient, servers: Servers, expected: list[float], timeout: float = 15.0
) -> None:
    """Poll the gateway's metrics until each server's `up` is as expected."""
    deadline = time.monotonic() + timeout
    labels = [servers.label(i) for i in range(3)]
    while True:
        up = await upstream_up(client)
        if [up.get(label) for label in labels] == expected:
            return
        assert time.monotonic() < deadline, f"upstream_up stayed {up}"
        await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
async def _all_servers_in_rotation(servers: Servers, client: httpx.AsyncClient) -> None:
    """Each test starts with three running, well-behaved doubles, all in rotation."""
    for double in servers.doubles:
        double.start()
        double.clear()
        double.completion_tokens = 5
        double.chunk_delay = 0.0
        double.first_byte_delay = 0.0
    await wait_until_up(client, servers, [1.0, 1.0, 1.0])


def chat(model: str, *, stream: bool = False) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


# -- routing ----------------------------------------------------------------------------------


async def test_each_model_goes_to_a_server_that_has_it(
    client: httpx.AsyncClient, auth: dict[str, str], servers: Servers
) -> None:
    for model in OWN:
        response = await client.post("/api/chat", json=chat(model), headers=auth)
        assert response.status_code == 200
    gamma = await client.post(
        "/v1/chat/completions", json=chat("gamma:1b", stream=True), headers=auth
    )
    assert gamma.status_code == 200
    show = await client.post("/api/show", json={"model": "beta:1b"}, headers=auth)
    assert show.status_code == 200

    assert servers.calls("/api/chat") == [1, 1, 1]
    for double, own in zip(servers.doubles, OWN, strict=True):
        chats = [r.json for r in double.requests if r.path == "/api/chat"]
        assert [body["model"] for body in chats if body] == [own]
    assert servers.calls("/v1/chat/completions") == [0, 0, 1]
    assert servers.calls("/api/show") == [0, 1, 0]


async def test_load_spreads_over_the_servers_that_share_a_model(
    client: httpx.AsyncClient, auth: dict[str, str], servers: Servers
) -> None:
    for double in servers.doubles:
        double.chunk_delay = 0.1  # each stream lasts about 0.6 s: all nine overlap

    async def stream() -> list[str]:
        async with client.stream(
            "POST", "/api/chat", json=chat(SHARED, stream=True), headers=auth
        ) as r:
            assert r.status_code == 200
            return [line async for line in r.aiter_lines() if line]

    answers = await asyncio.gather(*(stream() for _ in range(9)))

    assert all(orjson.loads(lines[-1])["done"] for lines in answers)
    assert servers.calls("/api/chat") == [3, 3, 3]  # least in flight first


# -- listings ---------------------------------------------------------------------------------


async def test_listings_merge_the_catalogs_and_stay_filtered_per_key(
    client: httpx.AsyncClient, auth: dict[str, str], db: AsyncSession, servers: Servers
) -> None:
    tags = (await client.get("/api/tags", headers=auth)).json()
    assert [m["name"] for m in tags["models"]] == sorted([*OWN, SHARED])
    models = (await client.get("/v1/models", headers=auth)).json()
    assert [m["id"] for m in models["data"]] == sorted([*OWN, SHARED])

    tenant = await make_tenant(db)
    await grant(db, tenant.id, "beta:1b")
    key = await make_key(db, tenant.name)
    narrow = {"Authorization": f"Bearer {key.secret}"}
    tags = (await client.get("/api/tags", headers=narrow)).json()
    assert [m["name"] for m in tags["models"]] == ["beta:1b"]


async def test_ps_merges_what_every_server_has_loaded(
    client: httpx.AsyncClient, auth: dict[str, str], db: AsyncSession, servers: Servers
) -> None:
    for model in ("alpha:1b", "beta:1b", SHARED, SHARED, SHARED):
        assert (await client.post("/api/chat", json=chat(model), headers=auth)).status_code == 200
    # alpha and beta have one server each; the shared model went to the least loaded,
    # ties in turn, so to several servers (which one is next depends on whether the
    # previous slot was back yet: docs/SCHEDULING.md).
    own = [1, 1, 0]
    shared = [calls - mine for calls, mine in zip(servers.calls("/api/chat"), own, strict=True)]
    assert sum(shared) == 3
    assert sum(1 for count in shared if count) >= 2

    ps = await client.get("/api/ps", headers=auth)

    assert ps.status_code == 200
    names = [m["name"] for m in ps.json()["models"]]
    assert len(names) == len(set(names))  # loaded on several servers, listed once
    assert {"alpha:1b", "beta:1b", SHARED} <= set(names)
    assert servers.calls("/api/ps") == [1, 1, 1]

    tenant = await make_tenant(db)
    await grant(db, tenant.id, "beta:1b")
    key = await make_key(db, tenant.name)
    narrow = await client.get("/api/ps", headers={"Authorization": f"Bearer {key.secret}"})
    assert [m["name"] for m in narrow.json()["models"]] == ["beta:1b"]


# -- health -----------------------------------------------------------------------------------


async def test_readyz_lists_each_server(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {
            "postgres": "ok",
            "redis": "ok",
            "ollama_0": "ok",
            "ollama_1": "ok",
            "ollama_2": "ok",
        },
    }


async def test_killing_a_server_loses_no_request_and_it_comes_back(
    client: httpx.AsyncClient, auth: dict[str, str], servers: Servers, gateway: GatewayProcess
) -> None:
    _, second, _ = servers.doubles
    for double in servers.doubles:
        double.first_byte_delay = 0.05  # requests are in flight when the server dies

    async def worker(count: int) -> list[int]:
        statuses = []
        for _ in range(count):
            response = await client.post("/api/chat", json=chat(SHARED), headers=auth)
            statuses.append(response.status_code)
        return statuses

    workers = [asyncio.create_task(worker(12)) for _ in range(6)]
    await asyncio.to_thread(second.wait_for_requests, 4)
    await asyncio.to_thread(second.stop)
    statuses = [status for done in await asyncio.gather(*workers) for status in done]

    assert statuses == [200] * 72
    await wait_until_up(client, servers, [1.0, 0.0, 1.0])
    assert gateway.wait_for_log("upstream_no_answer", timeout=1) is not None
    ejected = gateway.wait_for_log("upstream_ejected", timeout=1)
    assert ejected is not None
    assert servers.label(1) in ejected

    # Its own model is on no other server: refused at once, with a time to come back.
    beta = await client.post("/api/chat", json=chat("beta:1b"), headers=auth)
    assert beta.status_code == 503
    assert beta.json() == {"error": 'model "beta:1b" is temporarily unavailable; retry shortly'}
    assert 1 <= int(beta.headers["retry-after"]) <= 10
    assert "127.0.0.1" not in beta.text

    ready = await _readyz_until(client, "degraded")
    assert ready.status_code == 200
    assert ready.json()["failing"] == ["ollama_1"]
    errors = await samples(client, "neuronetz_upstream_errors_total")
    connect_errors = {"upstream": servers.label(1), "kind": "connect"}
    assert [value >= 1 for labels, value in errors if labels == connect_errors] == [True]

    await asyncio.to_thread(second.start)  # the same port again
    await wait_until_up(client, servers, [1.0, 1.0, 1.0])
    assert gateway.wait_for_log("upstream_readmitted", timeout=1) is not None
    assert (await _readyz_until(client, "ok")).status_code == 200
    second.clear()
    again = await client.post("/api/chat", json=chat("beta:1b"), headers=auth)
    assert again.status_code == 200
    assert servers.calls("/api/chat")[1] == 1


async def test_a_stream_that_has_begun_is_never_retried(
    client: httpx.AsyncClient, auth: dict[str, str], servers: Servers
) -> None:
    for double in servers.doubles:
        double.chunk_delay = 0.05
        double.completion_tokens = 200
    body = {"model": SHARED, "prompt": "hi"}
    async with client.stream("POST", "/api/generate", json=body, headers=auth) as response:
        lines = response.aiter_lines()
        first = orjson.loads(await anext(lines))
        assert first["done"] is False
        [serving] = [d for d in servers.doubles if d.in_flight()]
        await asyncio.to_thread(serving.stop)
        rest = [orjson.loads(line) async for line in lines if line]

    assert rest[-1] == {"error": "upstream connection lost"}
    assert sum(servers.calls("/api/generate")) == 1


async def _readyz_until(client: httpx.AsyncClient, status: str) -> httpx.Response:
    """`/readyz` once it reports `status` (its result is cached for about a second)."""
    deadline = time.monotonic() + 10
    while True:
        response = await client.get("/readyz")
        if response.json()["status"] == status:
            return response
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.1)
