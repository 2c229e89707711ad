"""Model access and listings per key (REFERENCE.md §4.4, §4.8) against a running gateway, on both
backends."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.db.tables import ModelGrant
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import BOTH_BACKENDS, Caller, allow_all_models
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.processes import GatewayProcess

pytestmark = BOTH_BACKENDS

GRANTED = "qwen2.5:0.5b"
OTHER = "llama3.1:8b"


async def grant(
    session: AsyncSession, tenant_id: uuid.UUID, model: str, key_id: uuid.UUID | None = None
) -> None:
    await session.execute(
        sa.insert(ModelGrant).values(tenant_id=tenant_id, key_id=key_id, model_name=model)
    )
    await session.commit()


async def _granted_key(session: AsyncSession) -> KeyFixture:
    tenant = await make_tenant(session)
    await grant(session, tenant.id, GRANTED)
    return await make_key(session, tenant.name)


def _auth(key: KeyFixture) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret}"}


async def test_listings_show_only_granted_models(
    session: AsyncSession, client: httpx.AsyncClient, double: OllamaDouble
) -> None:
    key = await _granted_key(session)
    tags = (await client.get("/api/tags", headers=_auth(key))).json()
    assert [m["name"] for m in tags["models"]] == [GRANTED]
    assert tags["models"][0]["details"]
    models = (await client.get("/v1/models", headers=_auth(key))).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [GRANTED]
    one = await client.get(f"/v1/models/{GRANTED}", headers=_auth(key))
    assert one.json()["id"] == GRANTED
    assert [r.path for r in double.requests] == []  # built from the catalog


async def test_ungranted_and_unknown_models_are_indistinguishable(
    session: AsyncSession, client: httpx.AsyncClient, double: OllamaDouble
) -> None:
    key = await _granted_key(session)
    for model in (OTHER, "does-not-exist:1b"):
        chat = await client.post(
            "/api/chat", json={"model": model, "messages": []}, headers=_auth(key)
        )
        assert chat.status_code == 404
        assert chat.json() == {"error": f'model "{model}" not found'}
        v1 = await client.get(f"/v1/models/{model}", headers=_auth(key))
        assert v1.status_code == 404
        assert v1.json()["error"]["code"] == "model_not_found"
        show = await client.post("/api/show", json={"model": model}, headers=_auth(key))
        assert show.status_code == 404
    assert double.requests == []


async def test_key_grants_narrow_the_tenant(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    narrow = await make_key(session, tenant.name)
    await grant(session, tenant.id, GRANTED, narrow.key_id)
    wide = await make_key(session, tenant.name)
    narrow_tags = (await client.get("/api/tags", headers=_auth(narrow))).json()
    wide_tags = (await client.get("/api/tags", headers=_auth(wide))).json()
    assert [m["name"] for m in narrow_tags["models"]] == [GRANTED]
    assert len(wide_tags["models"]) == 3


async def test_grant_takes_effect_without_restart(
    session: AsyncSession, client: httpx.AsyncClient
) -> None:
    key = await _granted_key(session)
    body = {"model": OTHER, "messages": [{"role": "user", "content": "x"}], "stream": False}
    assert (await client.post("/api/chat", json=body, headers=_auth(key))).status_code == 404
    await grant(session, key.tenant_id, OTHER)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while (await client.post("/api/chat", json=body, headers=_auth(key))).status_code != 200:
        assert loop.time() < deadline, "grant not applied within 1 s"


async def test_ps_is_filtered(caller: Caller, session: AsyncSession, double: OllamaDouble) -> None:
    # Load two models in the double, then look through a key that sees one of them.
    for model in (GRANTED, OTHER):
        await caller.client.post(
            "/api/generate",
            json={"model": model, "prompt": "x", "stream": False},
            headers=caller.auth,
        )
    key = await _granted_key(session)
    gateway_ps = await caller.client.get("/api/ps", headers=_auth(key))
    assert gateway_ps.status_code == 200
    assert [m["name"] for m in gateway_ps.json()["models"]] == [GRANTED]


async def test_version_passes_through(caller: Caller, gateway: GatewayProcess) -> None:
    version = await caller.client.get("/api/version", headers=caller.auth)
    assert version.status_code == 200
    assert "version" in version.json()
