"""The access log: one JSON line per request, never a key, a prompt or a response."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import allow_all_models
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.processes import GatewayProcess

MODEL = "llama3.1:8b"
EMBED_MODEL = "nomic-embed-text:latest"


@pytest.fixture
async def logging_key(session: AsyncSession) -> KeyFixture:
    """A key with prompt logging on: the capture path must not leak into logs either."""
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    return await make_key(session, tenant.name, prompt_logging=True)


def access_lines(gateway: GatewayProcess) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in gateway.logs().splitlines()
        if '"event":"request"' in line and line.startswith("{")
    ]


async def test_one_line_per_request_without_secrets(
    gateway: GatewayProcess, double: OllamaDouble, logging_key: KeyFixture
) -> None:
    marker = f"prompt-marker-{uuid.uuid4().hex}"
    secret = logging_key.secret
    auth = {"Authorization": f"Bearer {secret}"}
    ids: dict[str, str] = {}

    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:

        async def call(name: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
            ids[name] = f"log-{name}-{uuid.uuid4().hex[:8]}"
            headers = {**kwargs.pop("headers", auth), "X-Request-ID": ids[name]}
            return await client.request(method, path, headers=headers, **kwargs)

        messages = [{"role": "user", "content": marker}]
        chat = {"model": MODEL, "messages": messages, "stream": False}
        assert (await call("chat", "POST", "/api/chat", json=chat)).status_code == 200
        generate = {"model": MODEL, "prompt": marker}
        assert (await call("generate", "POST", "/api/generate", json=generate)).status_code == 200
        sse = {"model": MODEL, "messages": messages, "stream": True}
        assert (await call("sse", "POST", "/v1/chat/completions", json=sse)).status_code == 200
        completion = {"model": MODEL, "prompt": marker}
        assert (await call("v1", "POST", "/v1/completions", json=completion)).status_code == 200
        embed = {"model": EMBED_MODEL, "input": marker}
        assert (await call("embed", "POST", "/api/embed", json=embed)).status_code == 200
        wrong = {"Authorization": f"Bearer {secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"}
        denied = await call("denied", "POST", "/api/chat", json=chat, headers=wrong)
        assert denied.status_code == 401
        # A key pasted into the path or the query string must not reach the log either.
        assert (await call("path", "GET", f"/api/{secret}")).status_code == 404
        assert (await call("query", "GET", f"/api/tags?key={secret}")).status_code == 200

        double.mid_stream_error_after = 2
        stream = {"model": MODEL, "messages": messages}
        assert (await call("broken", "POST", "/api/chat", json=stream)).status_code == 200
        double.mid_stream_error_after = None

        double.completion_tokens, double.chunk_delay = 1000, 0.02
        ids["cancel"] = f"log-cancel-{uuid.uuid4().hex[:8]}"
        headers = {**auth, "X-Request-ID": ids["cancel"]}
        async with client.stream("POST", "/api/chat", json=stream, headers=headers) as response:
            lines = response.aiter_lines()
            for _ in range(3):
                await anext(lines)

    for request_id in ids.values():
        found = await asyncio.to_thread(gateway.wait_for_log, request_id, 5.0)
        assert found is not None, request_id
    by_id = {entry["client_request_id"]: entry for entry in access_lines(gateway)}
    counts = [entry["client_request_id"] for entry in access_lines(gateway)]
    assert all(counts.count(request_id) == 1 for request_id in ids.values())

    first = by_id[ids["chat"]]
    assert first["tenant"] == logging_key.tenant_name
    assert first["key_prefix"] == logging_key.prefix
    assert (first["method"], first["route"], first["model"]) == ("POST", "/api/chat", MODEL)
    assert (first["status"], first["outcome"]) == (200, "ok")
    assert first["prompt_tokens"] > 0
    assert first["completion_tokens"] == 5
    assert first["latency_ms"] >= first["upstream_ms"] > 0
    assert first["client_ip"] == "127.0.0.1"
    assert first["upstream"] == double.base_url.removeprefix("http://")
    assert first["level"] == "info"
    assert first["timestamp"].endswith("Z")
    assert by_id[ids["denied"]]["outcome"] == "auth_failed"
    assert by_id[ids["denied"]]["tenant"] is None
    assert by_id[ids["broken"]]["outcome"] == "upstream_error"
    assert by_id[ids["cancel"]]["outcome"] == "cancelled"
    assert by_id[ids["embed"]]["model"] == EMBED_MODEL
    assert by_id[ids["path"]]["route"] == "/api/nz_<redacted>"

    text = gateway.logs()
    assert secret.lower() not in text.lower()
    assert secret[len(logging_key.prefix) :].lower() not in text.lower()  # the secret part
    assert marker not in text
    assert "tok0" not in text
    assert "tok1" not in text
