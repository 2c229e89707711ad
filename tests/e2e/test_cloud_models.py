"""Cloud models through a running gateway (docs/REFERENCE.md §11): present on the double,
never listed for an `allow_all_models` tenant and 404 like an unknown model, until an
operator approves one with `register-model --cloud`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin import models as admin
from tests.conftest import make_settings
from tests.doubles.ollama import DEFAULT_MODELS, OllamaDouble
from tests.e2e.conftest import Backend, Caller
from tests.support.processes import GatewayProcess
from tests.support.stack import start_gateway

CLOUD = "gpt-oss:120b-cloud"


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble([*DEFAULT_MODELS, CLOUD]) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(backend: Backend, double: OllamaDouble) -> Iterator[GatewayProcess]:
    # Discovery (and the catalog reload with it) every half second.
    process = start_gateway(
        backend.database_url, double, {"MODEL_DISCOVERY_INTERVAL_SECONDS": "0.5"}
    )
    yield process
    process.stop()


async def listed(caller: Caller) -> tuple[set[str], set[str]]:
    tags = (await caller.client.get("/api/tags", headers=caller.auth)).json()
    models = (await caller.client.get("/v1/models", headers=caller.auth)).json()
    return {m["name"] for m in tags["models"]}, {m["id"] for m in models["data"]}


async def chat(caller: Caller, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    return await caller.client.post("/api/chat", json=body, headers=caller.auth)


async def test_a_cloud_model_is_invisible_and_unknown_until_approved(
    caller: Caller, double: OllamaDouble, session: AsyncSession, database_url: str
) -> None:
    tags, models = await listed(caller)
    assert "llama3.1:8b" in tags
    assert CLOUD not in tags
    assert CLOUD not in models
    refused, unknown = await chat(caller, CLOUD), await chat(caller, "ghost:1b")
    assert refused.status_code == unknown.status_code == 404
    assert refused.json() == {"error": f'model "{CLOUD}" not found'}
    assert double.requests == []

    await admin.register_model(session, make_settings(database_url), CLOUD, cloud=True)
    try:
        async with asyncio.timeout(10):  # the next catalog reload picks the approval up
            while CLOUD not in (await listed(caller))[1]:
                await asyncio.sleep(0.1)
        assert CLOUD in (await listed(caller))[0]
        assert (await chat(caller, CLOUD)).status_code == 200
        assert double.requests[-1].decision.model == CLOUD
    finally:
        await admin.unregister_model(session, CLOUD)
