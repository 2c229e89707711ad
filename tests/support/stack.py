"""A running stack for end-to-end tests: Ollama double + real gateway process(es).

The gateway runs as a real server process against the session's Postgres database and
the shared Redis, pointed at an `OllamaDouble`; tests talk to it over real sockets
with httpx and the official `openai` / `ollama` clients.
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.doubles.ollama import OllamaDouble
from tests.support.databases import REDIS_URL
from tests.support.processes import GatewayProcess


def gateway_env(database_url: str, double: OllamaDouble, **overrides: str) -> dict[str, str]:
    """Environment of a test gateway: fast flushes, quick discovery, cheap hashing."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "OLLAMA_BASE_URL": double.base_url,
        "MODEL_DISCOVERY_ENABLED": "true",
        "MODEL_DISCOVERY_INTERVAL_SECONDS": "30",
        "AUDIT_FLUSH_INTERVAL_MS": "50",
        "KEY_CACHE_TTL_SECONDS": "60",
        "LOG_LEVEL": "INFO",
        "UPSTREAM_READ_TIMEOUT_SECONDS": "10",
    }
    env.update(overrides)
    return env


def start_gateway(
    database_url: str, double: OllamaDouble, env: Mapping[str, str] | None = None
) -> GatewayProcess:
    """A started gateway process whose catalog already holds the double's models."""
    process = GatewayProcess(gateway_env(database_url, double, **dict(env or {})))
    process.start()
    if process.wait_for_log("model_catalog_ready", timeout=15) is None:
        process.stop()
        raise RuntimeError(f"discovery did not sync:\n{process.logs()}")
    return process
