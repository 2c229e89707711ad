"""The dashboard and the rules against a real Prometheus scraping a gateway under traffic.

Prometheus (Debian's package) runs the example configuration of ops/prometheus/ with
the test's target, token and a 1 s scrape interval, and loads the rules. While chats
(plain and streamed), upstream failures, wrong keys and budget refusals flow through
the gateway to the Ollama double (the chats' tenant marked for per-tenant metrics),
every query of every dashboard panel must return a number through Prometheus's HTTP
API, every recording rule must produce series and no rule may fail to evaluate.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.limits import LimitUpdate, set_key_limits, set_tenant_metrics
from tests.doubles.ollama import OllamaDouble
from tests.e2e.conftest import Backend, allow_all_models
from tests.support import prometheus
from tests.support.dashboard import (
    PROMETHEUS_EXAMPLE,
    RULES,
    as_prometheus_query,
    load_dashboard,
    load_yaml,
    panel_queries,
    rules,
)
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.processes import GatewayProcess
from tests.support.prometheus import PrometheusProcess, finite
from tests.support.stack import start_gateway

pytestmark = pytest.mark.skipif(
    not prometheus.available(),
    reason="prometheus not installed (.ci/install-ops-tools installs Debian's package)",
)

MODEL = "llama3.1:8b"
FAILING_MODEL = "qwen2.5:0.5b"
JOB = "neuronetz-gateway"
METRICS_TOKEN = secrets.token_hex(16)
# What Grafana would put in: an interval of several scrapes, and the time range.
RATE_INTERVAL = "15s"
TIME_RANGE = "5m"
DATA_TIMEOUT_SECONDS = 90.0


@pytest.fixture(scope="module")
def gateway(backend: Backend, double: OllamaDouble) -> Iterator[GatewayProcess]:
    """The module's gateway, with `/metrics` behind a token as in production."""
    process = start_gateway(backend.database_url, double, {"METRICS_TOKEN": METRICS_TOKEN})
    yield process
    process.stop()


def prometheus_config(target: str, token_file: Path) -> dict[str, Any]:
    """The shipped example with this test's target, token and a fast rhythm."""
    config = load_yaml(PROMETHEUS_EXAMPLE)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(RULES)]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [target]}]
    return config


@pytest.fixture(scope="module")
def server(
    gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusProcess]:
    token_file = tmp_path_factory.mktemp("prometheus-secrets") / "metrics-token"
    token_file.write_text(METRICS_TOKEN)
    running = PrometheusProcess(prometheus_config(f"127.0.0.1:{gateway.port}", token_file))
    running.start()
    yield running
    running.stop()


async def _key(
    session: AsyncSession, *, marked: bool = False, daily_tokens: int | None = None
) -> KeyFixture:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    if marked:
        await set_tenant_metrics(session, tenant.name, True, max_tenants=1000)
    key = await make_key(session, tenant.name)
    if daily_tokens is not None:
        limits = LimitUpdate(values={"daily_tokens": daily_tokens})
        await set_key_limits(session, key.prefix, limits)
    return key


def chat(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}


@contextlib.asynccontextmanager
async def traffic(
    client: httpx.AsyncClient, good: KeyFixture, broke: KeyFixture
) -> AsyncIterator[None]:
    """Requests of every kind the dashboard shows, in a loop until the block ends."""
    headers = {"Authorization": f"Bearer {good.secret}"}
    wrong = {"Authorization": "Bearer nz_abcdefgh" + "A" * 38}
    no_budget = {"Authorization": f"Bearer {broke.secret}"}
    expected = [
        ("/api/chat", chat(MODEL, stream=False), headers, 200),
        ("/v1/chat/completions", chat(MODEL, stream=True), headers, 200),
        ("/api/chat", chat(FAILING_MODEL, stream=False), headers, 502),
        ("/api/chat", chat(MODEL, stream=False), wrong, 401),
        ("/api/chat", chat(MODEL, stream=False), no_budget, 429),
    ]

    async def loop() -> None:
        while True:
            for path, body, auth, status in expected:
                response = await client.post(path, json=body, headers=auth)
                assert response.status_code == status, (path, response.text)
            await asyncio.sleep(0.05)  # pacing the load, not waiting for an event

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def empty_queries(
    server: PrometheusProcess, client: httpx.AsyncClient, queries: dict[str, str]
) -> dict[str, str]:
    """The queries (by name) that return no finite number right now."""
    empty = {}
    for name, expr in queries.items():
        if not finite(await server.query(client, expr)):
            empty[name] = expr
    return empty


async def test_every_panel_and_recording_rule_returns_data(
    gateway: GatewayProcess,
    server: PrometheusProcess,
    double: OllamaDouble,
    session: AsyncSession,
) -> None:
    double.behaviour_for(FAILING_MODEL).fail_with = (500, "boom")
    good, broke = await _key(session, marked=True), await _key(session, daily_tokens=0)
    instance = f"127.0.0.1:{gateway.port}"
    queries = {
        f"{query.panel} [{query.ref_id}]": as_prometheus_query(
            query.expr,
            instance=instance,
            model=MODEL,
            rate_interval=RATE_INTERVAL,
            time_range=TIME_RANGE,
        )
        for query in panel_queries(load_dashboard())
    }
    recorded = {rule["record"] for rule in rules(load_yaml(RULES)) if "record" in rule}
    queries.update({name: name for name in recorded})

    async with (
        httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client,
        httpx.AsyncClient(timeout=10) as api,
        traffic(client, good, broke),
    ):
        deadline = asyncio.get_running_loop().time() + DATA_TIMEOUT_SECONDS
        while empty := await empty_queries(server, api, queries):
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"no data after {DATA_TIMEOUT_SECONDS} s: {empty}")
            await asyncio.sleep(1)  # Prometheus scrapes every second

        (target,) = (await server.api(api, "targets"))["activeTargets"]
        assert target["labels"] == {"instance": instance, "job": JOB}
        assert target["health"] == "up"  # scraped with the token
        groups = (await server.api(api, "rules"))["groups"]
        for rule in (rule for group in groups for rule in group["rules"]):
            assert rule["health"] == "ok", rule
        alerts = (await server.api(api, "alerts"))["alerts"]
        names = {alert["labels"]["alertname"] for alert in alerts}
        assert not names & {"NeuronetzGatewayDown", "NeuronetzGatewayNotReady"}
