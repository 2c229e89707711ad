"""Prometheus metrics (docs/REFERENCE.md §5) of a running gateway, one worker and several."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.limits import set_tenant_metrics
from tests.doubles.ollama import (
    OllamaDouble,
    anthropic_surface,
    count_prompt_tokens,
    responses_surface,
)
from tests.e2e.conftest import Caller, allow_all_models
from tests.support.factories import make_key, make_tenant
from tests.support.metrics import Scrape, scrape
from tests.support.processes import GatewayProcess
from tests.support.stack import gateway_env

MODEL = "llama3.1:8b"
REQUESTS = "neuronetz_requests_total"
WRONG_KEY = "nz_abcdefgh" + "A" * 32 + "AAAAAA"


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


async def test_requests_refusals_tokens_and_timings_are_counted(
    caller: Caller, double: OllamaDouble, gateway: GatewayProcess
) -> None:
    client, auth = caller.client, caller.auth
    tenant = caller.key.tenant_name
    upstream = urlsplit(double.base_url).netloc
    before = await scrape(client)

    bodies = [chat(f"count me {i}", stream=False) for i in range(3)]
    for body in bodies:
        assert (await client.post("/api/chat", json=body, headers=auth)).status_code == 200
    sse = {**chat("stream me"), "stream": True}
    assert (await client.post("/v1/chat/completions", json=sse, headers=auth)).status_code == 200
    wrong = {"Authorization": f"Bearer {WRONG_KEY}"}
    assert (await client.post("/api/chat", json=bodies[0], headers=wrong)).status_code == 401
    assert (await client.get("/api/nothing-here", headers=auth)).status_code == 404
    assert (await client.post("/api/pull", json={"model": MODEL}, headers=auth)).status_code == 403
    unknown = {**bodies[0], "model": "no-such-model:1b"}
    assert (await client.post("/api/chat", json=unknown, headers=auth)).status_code == 404
    double.fail_with = (500, "boom")
    assert (await client.post("/api/chat", json=bodies[0], headers=auth)).status_code == 502

    after = await scrape(client)
    chat_ok = {"route": "/api/chat", "status": "200", "outcome": "ok"}
    assert delta(before, after, REQUESTS, **chat_ok) == 3
    sse_ok = {"route": "/v1/chat/completions", "status": "200", "outcome": "ok"}
    assert delta(before, after, REQUESTS, **sse_ok) == 1
    assert delta(before, after, REQUESTS, route="/api/chat", outcome="auth_failed") == 1
    assert delta(before, after, REQUESTS, route="other", status="404", outcome="not_found") == 1
    assert delta(before, after, REQUESTS, route="other", status="403", outcome="forbidden") == 1
    assert delta(before, after, REQUESTS, route="/api/chat", status="502") == 1
    assert delta(before, after, REQUESTS) == 9

    refusals = "neuronetz_refusals_total"
    assert delta(before, after, refusals, reason="auth_failed") == 1
    assert delta(before, after, refusals, reason="not_found") == 2  # unknown path and model
    assert delta(before, after, refusals, reason="forbidden") == 1
    assert delta(before, after, refusals) == 4  # the upstream's 502 is no refusal

    tokens = {"model": MODEL}
    completion = delta(before, after, "neuronetz_tokens_total", direction="completion", **tokens)
    assert completion == 4 * 5
    prompt = delta(before, after, "neuronetz_tokens_total", direction="prompt", **tokens)
    assert prompt == sum(count_prompt_tokens(b) for b in [*bodies, sse])

    # Every /api/chat request is timed; the upstream only for those that reached it.
    count = "neuronetz_request_duration_seconds_count"
    assert delta(before, after, count, route="/api/chat") == 3 + 1 + 1 + 1
    ttfb = "neuronetz_time_to_first_byte_seconds_count"
    assert delta(before, after, ttfb, route="/api/chat") == 6
    upstream_count = "neuronetz_upstream_duration_seconds_count"
    assert delta(before, after, upstream_count, route="/api/chat", upstream=upstream) == 4
    assert delta(before, after, "neuronetz_upstream_duration_seconds_bucket", le="+Inf") == 5
    added = "neuronetz_added_latency_seconds_count"
    assert delta(before, after, added, route="/api/chat") == 4  # the forwarded ones

    # The key was verified once; every later request of it was a cache hit.
    hits = delta(before, after, "neuronetz_auth_cache_lookups_total", result="hit")
    assert hits >= 5
    assert after.value("neuronetz_in_flight_requests") == 0
    assert "neuronetz_audit_buffer_rows" in after.names()
    assert after.value("neuronetz_audit_buffer_capacity_rows") == 50_000  # the default
    # Each scrape ran the readiness checks: every dependency of this gateway answers.
    assert after.value("neuronetz_ready") == 1
    checks = after.label_values("neuronetz_readiness_check_ok", "check")
    assert checks == {"postgres", "redis", "ollama"}
    assert all(after.value("neuronetz_readiness_check_ok", check=c) == 1 for c in checks)

    # Bounded labels only: no key, key prefix or request id ever becomes a label value,
    # nor the name of a tenant no operator marked for metrics.
    for _, labels, _ in after.samples:
        assert "tenant" not in labels
        for value in labels.values():
            assert "nz_" not in value
            assert caller.key.prefix.removeprefix("nz_") not in value
            assert tenant not in value


async def test_the_anthropic_and_responses_routes_are_counted(
    caller: Caller, double: OllamaDouble
) -> None:
    """`/v1/messages`, its `count_tokens` and `/v1/responses` are counted like every model
    route (docs/REFERENCE.md §12); `GET /` is answered without a trace."""
    client, auth = caller.client, caller.auth
    upstream = urlsplit(double.base_url).netloc
    before = await scrape(client)

    messages = {"model": MODEL, "max_tokens": 50, "messages": chat("hi")["messages"]}
    for stream in (False, True):
        sent = await client.post("/v1/messages", json={**messages, "stream": stream}, headers=auth)
        assert sent.status_code == 200
    responses = {"model": MODEL, "input": "one two", "stream": True}
    assert (await client.post("/v1/responses", json=responses, headers=auth)).status_code == 200
    counted = await client.post("/v1/messages/count_tokens", json=messages, headers=auth)
    assert counted.status_code == 200
    no_cap = {"model": MODEL, "messages": messages["messages"]}
    assert (await client.post("/v1/messages", json=no_cap, headers=auth)).status_code == 400
    assert (await client.get("/")).status_code == 200

    after = await scrape(client)
    ok = {"status": "200", "outcome": "ok"}
    assert delta(before, after, REQUESTS, route="/v1/messages", **ok) == 2
    assert delta(before, after, REQUESTS, route="/v1/responses", **ok) == 1
    assert delta(before, after, REQUESTS, route="/v1/messages/count_tokens", **ok) == 1
    assert delta(before, after, REQUESTS, route="/v1/messages", outcome="client_error") == 1
    assert delta(before, after, REQUESTS) == 5  # nothing for `/`
    upstream_count = "neuronetz_upstream_duration_seconds_count"
    for route, forwarded in [("/v1/messages", 2), ("/v1/responses", 1)]:
        assert delta(before, after, upstream_count, route=route, upstream=upstream) == forwarded
    ttfb = "neuronetz_time_to_first_byte_seconds_count"
    assert delta(before, after, ttfb, route="/v1/messages/count_tokens") == 1
    assert delta(before, after, upstream_count, route="/v1/messages/count_tokens") == 0

    seen = [r for r in double.requests if r.path in ("/v1/messages", "/v1/responses")]
    assert len(seen) == 3
    reported = [
        (anthropic_surface if r.path == "/v1/messages" else responses_surface)
        .to_turn(r.json, MODEL)
        .prompt_tokens()
        for r in seen
    ]
    tokens = "neuronetz_tokens_total"
    assert delta(before, after, tokens, direction="prompt", model=MODEL) == sum(reported)
    assert delta(before, after, tokens, direction="completion", model=MODEL) == 3 * 5


async def test_a_tenant_marked_while_running_is_counted_by_name(
    caller: Caller, session: AsyncSession
) -> None:
    client, auth, tenant = caller.client, caller.auth, caller.key.tenant_name
    body = chat("count my tenant", stream=False)
    assert (await client.post("/api/chat", json=body, headers=auth)).status_code == 200
    await set_tenant_metrics(session, tenant, True, max_tenants=10)
    # The change feed evicts the cached key; once it has, requests carry the mark.
    deadline = asyncio.get_running_loop().time() + 10
    while (await scrape(client)).value("neuronetz_tenant_requests_total", tenant=tenant) == 0:
        assert asyncio.get_running_loop().time() < deadline, "the mark never took effect"
        assert (await client.post("/api/chat", json=body, headers=auth)).status_code == 200
        await asyncio.sleep(0.05)
    before = await scrape(client)
    for _ in range(3):
        assert (await client.post("/api/chat", json=body, headers=auth)).status_code == 200
    refused = {**body, "model": "no-such-model:1b"}
    assert (await client.post("/api/chat", json=refused, headers=auth)).status_code == 404
    after = await scrape(client)

    requests = "neuronetz_tenant_requests_total"
    assert delta(before, after, requests, tenant=tenant, outcome="ok") == 3
    assert delta(before, after, requests, tenant=tenant, outcome="not_found") == 1
    prompt = delta(
        before, after, "neuronetz_tenant_tokens_total", tenant=tenant, direction="prompt"
    )
    assert prompt == 3 * count_prompt_tokens(body)
    completion = "neuronetz_tenant_tokens_total"
    assert delta(before, after, completion, tenant=tenant, direction="completion") == 3 * 5

    await set_tenant_metrics(session, tenant, False, max_tenants=10)


async def test_in_flight_gauge_counts_a_request_while_it_runs(
    caller: Caller, double: OllamaDouble
) -> None:
    double.hang = True
    request = asyncio.create_task(
        caller.client.post("/api/chat", json=chat("wait", stream=False), headers=caller.auth)
    )
    try:
        deadline = asyncio.get_running_loop().time() + 5
        while (await scrape(caller.client)).value("neuronetz_in_flight_requests") != 1:
            assert asyncio.get_running_loop().time() < deadline, "in-flight never reached 1"
            await asyncio.sleep(0.02)
    finally:
        double.hang = False
    assert (await request).status_code == 200
    assert (await scrape(caller.client)).value("neuronetz_in_flight_requests") == 0


# -- several worker processes ------------------------------------------------------------


def _metrics_directories() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("neuronetz-metrics-*"))


@pytest.fixture(scope="module")
def two_workers(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    existing = _metrics_directories()
    process = GatewayProcess(gateway_env(database_url, double, GATEWAY_WORKERS="2"))
    process.start()
    try:
        assert process.log.wait_for_count("model_catalog_ready", 2, timeout=20), process.logs()
        assert len(_metrics_directories() - existing) == 1  # the private one of `serve`
        yield process
    finally:
        process.stop()
    assert _metrics_directories() == existing  # removed when the server exited


def _serving_pids(process: GatewayProcess, request_ids: set[str]) -> set[int]:
    pids = set()
    for line in process.logs().splitlines():
        if '"event":"request"' in line:
            entry = json.loads(line)
            if entry["client_request_id"] in request_ids:
                pids.add(entry["pid"])
    return pids


async def test_workers_report_one_sum(two_workers: GatewayProcess, session: AsyncSession) -> None:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    await set_tenant_metrics(session, tenant.name, True, max_tenants=10)
    key = await make_key(session, tenant.name)
    headers = {"Authorization": f"Bearer {key.secret}"}
    sent: set[str] = set()

    async def one(number: int) -> None:
        # A connection per request, so the kernel hands them to either worker.
        async with httpx.AsyncClient(base_url=two_workers.base_url, timeout=10) as client:
            request_id = f"workers-{number}"
            response = await client.post(
                "/api/chat",
                json=chat("x", stream=False),
                headers={**headers, "X-Request-ID": request_id},
            )
            assert response.status_code == 200
            sent.add(request_id)

    # Until both workers have served some (bounded), so a per-worker count would be short.
    batch = 0
    while len(_serving_pids(two_workers, sent)) < 2:
        assert batch < 10, "every request went to one worker"
        await asyncio.gather(*(one(batch * 10 + i) for i in range(10)))
        batch += 1
        two_workers.log.wait_for_count('"event":"request"', len(sent), timeout=5)

    for _ in range(6):  # each scrape may be answered by either worker
        async with httpx.AsyncClient(base_url=two_workers.base_url, timeout=10) as client:
            after = await scrape(client)
        assert after.value(REQUESTS, route="/api/chat", outcome="ok") == len(sent)
        completion = after.value(
            "neuronetz_tenant_tokens_total", direction="completion", tenant=tenant.name
        )
        assert completion == 5 * len(sent)
        assert after.value("neuronetz_in_flight_requests") == 0
