"""Prompt logging (docs/REFERENCE.md §4.10) through a running gateway: opt-in per key, with a TTL.

The request body as the client sent it and the response text as the client received
it (streams assembled, cancelled streams up to the cancel) land in `prompt_logs`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin.keys import create_key
from neuronetz_gateway.admin.prompt_logging import set_prompt_logging
from neuronetz_gateway.db.tables import AuditLog, PromptLog
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models, audit_rows
from tests.support.factories import FAST_HASHER, KeyFixture, make_key, make_tenant, unique_name
from tests.support.processes import GatewayProcess

MODEL = "llama3.1:8b"
TTL_HOURS = 6
FIVE_TOKENS = "tok0 tok1 tok2 tok3 tok4 "


@pytest.fixture
async def logged(session: AsyncSession) -> KeyFixture:
    """A key with prompt logging on and a TTL of its own."""
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    created = await create_key(
        session,
        FAST_HASHER,
        tenant_name=tenant.name,
        name=unique_name("k"),
        prompt_logging=True,
        prompt_log_ttl_hours=TTL_HOURS,
    )
    return KeyFixture(
        secret=created.secret,
        prefix=created.key.prefix,
        key_id=created.key.id,
        tenant_id=tenant.id,
        tenant_name=tenant.name,
    )


async def prompt_logs(engine: AsyncEngine, request_id: str) -> list[PromptLog]:
    """The prompt logs of a request whose audit row was written (same transaction)."""
    assert await audit_rows(engine, request_id), f"no audit row for {request_id}"
    async with AsyncSession(engine) as session:
        ours = sa.select(AuditLog.request_id).where(AuditLog.client_request_id == request_id)
        query = sa.select(PromptLog).where(PromptLog.request_id.in_(ours.scalar_subquery()))
        return list(await session.scalars(query))


async def send(
    gateway: GatewayProcess, key: KeyFixture, path: str, body: dict[str, Any]
) -> tuple[str, httpx.Response]:
    request_id = f"pl-{uuid.uuid4().hex[:12]}"
    headers = {"Authorization": f"Bearer {key.secret}", "X-Request-ID": request_id}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return request_id, response


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/chat", chat("native whole", stream=False)),
        ("/api/generate", {"model": MODEL, "prompt": "native stream"}),
        ("/v1/chat/completions", chat("sse stream", stream=True)),
        ("/v1/chat/completions", chat("openai whole")),
        ("/v1/completions", {"model": MODEL, "prompt": "openai text", "max_tokens": 50}),
        ("/v1/messages", chat("anthropic stream", max_tokens=50, stream=True)),
        ("/v1/messages", chat("anthropic whole", max_tokens=50)),
        ("/v1/responses", {"model": MODEL, "input": "responses stream", "stream": True}),
        ("/v1/responses", {"model": MODEL, "input": "responses whole"}),
    ],
)
async def test_request_and_assembled_response_are_logged_with_the_key_ttl(
    gateway: GatewayProcess, engine: AsyncEngine, logged: KeyFixture, path: str, body: Any
) -> None:
    request_id, _ = await send(gateway, logged, path, body)
    [entry] = await prompt_logs(engine, request_id)
    # As the client sent it: not the upstream's version (stream_options, caps added).
    assert entry.request == body
    assert entry.response == FIVE_TOKENS
    assert (entry.tenant_id, entry.key_id) == (logged.tenant_id, logged.key_id)
    assert entry.expires_at - entry.ts == timedelta(hours=TTL_HOURS)


@pytest.mark.parametrize(
    ("path", "body", "token_mark"),
    [
        ("/api/chat", chat("go on"), '"content":"tok'),
        ("/v1/messages", chat("go on", max_tokens=2000, stream=True), "event: content_block_delta"),
        (
            "/v1/responses",
            {"model": MODEL, "input": "go on", "stream": True},
            "event: response.output_text.delta",
        ),
    ],
)
async def test_a_cancelled_stream_logs_what_was_sent(
    gateway: GatewayProcess,
    double: OllamaDouble,
    engine: AsyncEngine,
    logged: KeyFixture,
    path: str,
    body: dict[str, Any],
    token_mark: str,
) -> None:
    double.completion_tokens, double.chunk_delay = 1000, 0.02
    request_id = f"pl-cancel-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {logged.secret}", "X-Request-ID": request_id}
    async with (
        httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client,
        client.stream("POST", path, json=body, headers=headers) as response,
    ):
        tokens = 0
        async for line in response.aiter_lines():
            tokens += token_mark in line
            if tokens == 3:
                break
    await asyncio.to_thread(double.wait_for_cancellation, 2.0)
    [row] = await audit_rows(engine, request_id)
    [entry] = await prompt_logs(engine, request_id)
    assert row.outcome == "cancelled"
    assert entry.request == body
    sent = entry.response or ""
    assert sent.startswith("tok0 tok1 tok2 ")
    assert len(sent.split()) == row.completion_tokens < 1000


async def _logged_soon(
    gateway: GatewayProcess, engine: AsyncEngine, key: KeyFixture, expected: bool
) -> None:
    """Requests until one is logged as `expected` (the change arrives by notification)."""
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        request_id, _ = await send(gateway, key, "/api/chat", chat("toggle", stream=False))
        if bool(await prompt_logs(engine, request_id)) == expected:
            return
        assert asyncio.get_running_loop().time() < deadline, "the change never arrived"


async def test_switching_an_existing_key_takes_effect_without_restart(
    gateway: GatewayProcess, engine: AsyncEngine, session: AsyncSession
) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    request_id, _ = await send(gateway, key, "/api/chat", chat("before", stream=False))
    assert await prompt_logs(engine, request_id) == []  # cached with logging off

    await set_prompt_logging(session, key.prefix, enabled=True, ttl_hours=2)
    await _logged_soon(gateway, engine, key, expected=True)
    request_id, _ = await send(gateway, key, "/api/chat", chat("on", stream=False))
    [entry] = await prompt_logs(engine, request_id)
    assert entry.expires_at - entry.ts == timedelta(hours=2)

    await set_prompt_logging(session, key.prefix, enabled=False)
    await _logged_soon(gateway, engine, key, expected=False)
    request_id, _ = await send(gateway, key, "/api/chat", chat("off", stream=False))
    assert await prompt_logs(engine, request_id) == []
