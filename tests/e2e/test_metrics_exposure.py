"""Who may read /metrics (docs/SECURITY.md): without METRICS_TOKEN only loopback clients,
with it only the token, whatever the address.

A client outside loopback is made the way a deployment sees one: the gateway trusts a
proxy on 127.0.0.1 (`TRUSTED_PROXY_IPS`) and the request names an outside client in
`X-Forwarded-For` (a documentation address, 203.0.113.0/24; no traffic goes there).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.doubles.ollama import OllamaDouble
from tests.support.databases import REDIS_URL
from tests.support.processes import GatewayProcess

OUTSIDE = "203.0.113.7"
TOKEN = "metrics-s3cret"


def _env(database_url: str, double: OllamaDouble, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "OLLAMA_BASE_URL": double.base_url,
        "MODEL_DISCOVERY_ENABLED": "false",
        "TRUSTED_PROXY_IPS": "127.0.0.1",
        **extra,
    }


@pytest.fixture(scope="module")
def without_token(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    with GatewayProcess(_env(database_url, double)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def with_token(database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    with GatewayProcess(_env(database_url, double, METRICS_TOKEN=TOKEN)) as gateway:
        yield gateway


def _metrics(gateway: GatewayProcess, **headers: str) -> httpx.Response:
    return httpx.get(gateway.base_url + "/metrics", headers=headers)


def test_without_a_token_a_loopback_client_reads_the_metrics(
    without_token: GatewayProcess,
) -> None:
    response = _metrics(without_token)
    assert response.status_code == 200
    assert "neuronetz_requests_total" in response.text
    # A trusted proxy forwarding for a client on the same machine is still loopback.
    assert _metrics(without_token, **{"X-Forwarded-For": "127.0.0.1"}).status_code == 200


@pytest.mark.parametrize(
    "forwarded_for",
    [OUTSIDE, f"{OUTSIDE}, 127.0.0.1", "2001:db8::7", f"127.0.0.1, {OUTSIDE}"],
)
def test_without_a_token_an_outside_client_gets_404(
    without_token: GatewayProcess, forwarded_for: str
) -> None:
    response = _metrics(without_token, **{"X-Forwarded-For": forwarded_for})
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}
    assert response.headers["x-request-id"]
    assert "neuronetz_" not in response.text


def test_without_a_token_production_mode_warns_at_start(without_token: GatewayProcess) -> None:
    assert without_token.wait_for_log("metrics_without_token", timeout=1) is not None


def test_with_a_token_only_the_token_opens_it(with_token: GatewayProcess) -> None:
    outside = {"X-Forwarded-For": OUTSIDE}
    assert _metrics(with_token).status_code == 401  # loopback is not enough
    assert _metrics(with_token, Authorization="Bearer wrong", **outside).status_code == 401
    opened = _metrics(with_token, Authorization=f"Bearer {TOKEN}", **outside)
    assert opened.status_code == 200
    assert "neuronetz_requests_total" in opened.text
    assert with_token.wait_for_log("metrics_without_token", timeout=0.1) is None
