"""A running stack for end-to-end tests: Ollama double + real gateway process(es).

The gateway runs as a real server process against the session's Postgres database and
the shared Redis, or in standalone mode (no DATABASE_URL, no REDIS_URL: SQLite in a
scratch DATA_DIR, the in-process limiter), pointed at an `OllamaDouble`; tests talk to
it over real sockets with httpx and the official `openai` / `ollama` clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tests.doubles.ollama import OllamaDouble
from tests.support.databases import REDIS_URL
from tests.support.processes import GatewayProcess


def gateway_env(database_url: str, double: OllamaDouble, **overrides: str) -> dict[str, str]:
    """Environment of a test gateway: fast flushes, quick discovery, cheap hashing."""
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        **standalone_env(double),
    }
    env.update(overrides)
    return env


def standalone_env(double: OllamaDouble, **overrides: str) -> dict[str, str]:
    """Environment of a standalone test gateway: no DATABASE_URL, no REDIS_URL."""
    env = {
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
    return _started(GatewayProcess(gateway_env(database_url, double, **dict(env or {}))))


def sqlite_url(data_dir: Path) -> str:
    """The database a standalone gateway with `DATA_DIR=data_dir` uses."""
    return f"sqlite+aiosqlite:///{data_dir / 'gateway.db'}"


def start_standalone_gateway(
    data_dir: Path, double: OllamaDouble, env: Mapping[str, str] | None = None
) -> GatewayProcess:
    """A started standalone gateway (it creates and migrates `data_dir`/gateway.db)."""
    full_env = standalone_env(double, DATA_DIR=str(data_dir), **dict(env or {}))
    return _started(GatewayProcess(full_env))


def _started(process: GatewayProcess) -> GatewayProcess:
    process.start()
    if process.wait_for_log("model_catalog_ready", timeout=15) is None:
        process.stop()
        raise RuntimeError(f"discovery did not sync:\n{process.logs()}")
    return process
