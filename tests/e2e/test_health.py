"""/healthz, /readyz and /metrics of a running gateway (docs/REFERENCE.md §5).

Readiness is checked against dead ports for each dependency; nothing shared is stopped.
"""

from __future__ import annotations

import httpx
import pytest

from tests.doubles.ollama import OllamaDouble
from tests.support.databases import REDIS_URL
from tests.support.metrics import parse
from tests.support.processes import GatewayProcess, free_port


def _env(database_url: str, ollama_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "OLLAMA_BASE_URL": ollama_url,
        "READINESS_TIMEOUT_SECONDS": "1",
        "MODEL_DISCOVERY_ENABLED": "false",
        **extra,
    }


def test_ready_when_everything_answers(database_url: str, double: OllamaDouble) -> None:
    with GatewayProcess(_env(database_url, double.base_url)) as gateway:
        health = httpx.get(gateway.base_url + "/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        ready = httpx.get(gateway.base_url + "/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "checks": {"postgres": "ok", "redis": "ok", "ollama": "ok"},
        }


def _dead_postgres_url(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(port=free_port()).render_as_string(hide_password=False)


@pytest.mark.parametrize("failing", ["postgres", "redis", "ollama"])
def test_not_ready_names_the_failing_check(
    database_url: str, double: OllamaDouble, failing: str
) -> None:
    env = _env(database_url, double.base_url)
    dead = f"127.0.0.1:{free_port()}"
    if failing == "redis":
        env["REDIS_URL"] = f"redis://{dead}/0"
    elif failing == "ollama":
        env["OLLAMA_BASE_URL"] = f"http://{dead}"
    if failing == "postgres":
        # `serve` migrates first, which a dead database would stop: skip that step.
        env["DATABASE_URL"] = _dead_postgres_url(database_url)
    with GatewayProcess(env, args=("--skip-migrations",)) as gateway:
        assert httpx.get(gateway.base_url + "/healthz").status_code == 200
        ready = httpx.get(gateway.base_url + "/readyz", timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["failing"] == [failing]
        assert body["checks"][failing] == "failing"
        assert "127.0.0.1" not in ready.text
        assert ready.headers["x-request-id"]
        # The same checks, as the metrics an alert reads (run again by the scrape).
        scraped = parse(httpx.get(gateway.base_url + "/metrics", timeout=10).text)
        assert scraped.value("neuronetz_ready") == 0
        for check in ("postgres", "redis", "ollama"):
            passing = 0 if check == failing else 1
            assert scraped.value("neuronetz_readiness_check_ok", check=check) == passing


def test_readiness_flips_when_the_double_starts(database_url: str) -> None:
    port = free_port()
    double = OllamaDouble(port=port)
    with GatewayProcess(_env(database_url, f"http://127.0.0.1:{port}")) as gateway:
        assert httpx.get(gateway.base_url + "/readyz").status_code == 503
        with double:
            # The result is cached for about a second: ask until it changes.
            import time

            deadline = time.monotonic() + 5
            while httpx.get(gateway.base_url + "/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)


def test_metrics_token(database_url: str, double: OllamaDouble) -> None:
    env = _env(database_url, double.base_url, METRICS_TOKEN="s3cret-metrics")
    with GatewayProcess(env) as gateway:
        assert httpx.get(gateway.base_url + "/metrics").status_code == 401
        wrong = httpx.get(gateway.base_url + "/metrics", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
        ok = httpx.get(
            gateway.base_url + "/metrics", headers={"Authorization": "Bearer s3cret-metrics"}
        )
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain")
