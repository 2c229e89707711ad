"""Settings: defaults, parsing of lists, and one-line errors naming the variable."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from neuronetz_gateway.config import ConfigError, load_settings
from tests.support.processes import base_environment


def test_defaults_are_sane(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(_env_file=None)
    assert settings.gateway_port == 8080
    assert settings.argon2_memory_kib == 19456
    assert settings.argon2_time_cost == 2
    assert settings.upstream_urls == ["http://127.0.0.1:11434"]
    assert settings.metrics_token is None


def test_without_urls_the_backends_are_standalone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = load_settings(_env_file=None)
    assert (settings.database_url, settings.redis_url) == (None, None)
    assert settings.data_dir == tmp_path / "neuronetz-gateway"
    assert settings.effective_database_url == (
        f"sqlite+aiosqlite:///{tmp_path}/neuronetz-gateway/gateway.db"
    )
    assert settings.standalone


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """As in a `.env` copied from `.env.example`."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    for name in ("DATABASE_URL", "REDIS_URL", "DATA_DIR"):
        monkeypatch.setenv(name, "")
    settings = load_settings(_env_file=None)
    assert (settings.database_url, settings.redis_url) == (None, None)
    assert settings.data_dir == tmp_path / "neuronetz-gateway"


def test_postgres_and_redis_are_the_production_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/x")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("GATEWAY_WORKERS", "4")
    settings = load_settings(_env_file=None)
    assert settings.effective_database_url == "postgresql+asyncpg://u@db/x"
    assert not settings.standalone


@pytest.mark.parametrize("database_url", [None, "postgresql+asyncpg://u@db/x"])
def test_several_workers_need_redis(
    monkeypatch: pytest.MonkeyPatch, database_url: str | None
) -> None:
    if database_url is not None:
        monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GATEWAY_WORKERS", "2")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "GATEWAY_WORKERS" in str(caught.value)
    assert "REDIS_URL" in str(caught.value)


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URLS", "http://a:11434/, http://b:11434")
    monkeypatch.setenv("TRUSTED_PROXY_IPS", "10.0.0.0/8, 127.0.0.1")
    settings = load_settings(_env_file=None)
    assert settings.upstream_urls == ["http://a:11434", "http://b:11434"]
    assert settings.trusted_proxy_ips == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.1/32"),
    ]


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("LOG_LEVEL", "warning", "log_level", "WARNING"),
        ("LOG_LEVEL", " Debug ", "log_level", "DEBUG"),
        ("LOG_FORMAT", "JSON", "log_format", "json"),
        ("LOG_FORMAT", "Console", "log_format", "console"),
        ("CLIENT_RUNTIME_OPTIONS", "PASS", "client_runtime_options", "pass"),
    ],
)
def test_settings_with_fixed_values_take_any_case(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(_env_file=None), field) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_PORT", "eighty"),
        ("GATEWAY_PORT", "70000"),
        ("LOG_FORMAT", "xml"),
        ("OLLAMA_BASE_URL", "ftp://x"),
        ("TRUSTED_PROXY_IPS", "10.0.0.0/33"),
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "sqlite+aiosqlite:///:memory:"),
        ("REDIS_URL", "memcached://x"),
        ("MAX_REQUEST_BODY_BYTES", "-1"),
        ("MODEL_DISCOVERY_ENABLED", "maybe"),
        ("LOG_LEVEL", "verbose"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert variable in message
    assert "\n" not in message


def test_error_never_echoes_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://admin:hunter2-secret@db/x")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "hunter2-secret" not in str(caught.value)


def test_serve_with_invalid_config_stops_with_one_line(tmp_path: object) -> None:
    env = {**base_environment(), "GATEWAY_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "neuronetz_gateway", "serve"],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GATEWAY_PORT" in lines[0]
    assert "Traceback" not in result.stderr


def test_listen_url_defaults_to_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    direct = "postgresql+asyncpg://u@db:5432/n"
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@pgbouncer:6432/n")
    assert load_settings(_env_file=None).listen_database_url.endswith("@pgbouncer:6432/n")
    monkeypatch.setenv("DATABASE_LISTEN_URL", direct)
    assert load_settings(_env_file=None).listen_database_url == direct


def test_listen_url_must_be_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_LISTEN_URL", "sqlite+aiosqlite:///x.db")
    with pytest.raises(ConfigError, match=r"^invalid configuration: DATABASE_LISTEN_URL: "):
        load_settings(_env_file=None)


def test_slots_one_value_for_every_server_or_one_per_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URLS", "http://a:11434, http://b:11434")
    default = load_settings(_env_file=None)
    assert (default.slots_of(0), default.slots_of(1)) == (4, 4)
    assert default.queue_max_wait_seconds == 30.0

    monkeypatch.setenv("OLLAMA_SLOTS", "2, 0")
    monkeypatch.setenv("QUEUE_MAX_WAIT_SECONDS", "1.5")
    settings = load_settings(_env_file=None)
    assert (settings.slots_of(0), settings.slots_of(1)) == (2, 0)
    assert settings.queue_max_wait_seconds == 1.5


@pytest.mark.parametrize("value", ["4,4,4", "-1", "x", "", "1.5", "10001"])
def test_bad_slots_name_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URLS", "http://a:11434, http://b:11434")
    monkeypatch.setenv("OLLAMA_SLOTS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert "OLLAMA_SLOTS" in str(caught.value)
