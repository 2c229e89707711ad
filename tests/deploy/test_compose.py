"""The compose files keep their promises (docs/REFERENCE.md §2, §8): only Caddy faces the internet,
Ollama is never published and sits on internal networks, secrets come from `.env`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.files import (
    COMPOSE_DEV,
    COMPOSE_PROD,
    ENV_PRODUCTION_EXAMPLE,
    REPO_ROOT,
    command_text,
    dockerfile_healthcheck,
    environment,
    load_compose,
    service_networks,
)
from tests.deploy.processes import compose_command

BOTH = pytest.mark.parametrize("path", [COMPOSE_PROD, COMPOSE_DEV], ids=["prod", "dev"])

REQUIRED_SECRETS = {
    COMPOSE_PROD: ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "METRICS_TOKEN", "ACME_EMAIL"],
    COMPOSE_DEV: ["POSTGRES_PASSWORD", "REDIS_PASSWORD"],
}


def services(path: Path) -> dict[str, dict[str, Any]]:
    return dict(load_compose(path)["services"])


def internal_networks(path: Path) -> set[str]:
    networks = load_compose(path).get("networks") or {}
    return {name for name, spec in networks.items() if spec and spec.get("internal") is True}


def is_ollama(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith("ollama/")


@BOTH
def test_no_ollama_service_publishes_ports(path: Path) -> None:
    for name, service in services(path).items():
        if name == "ollama" or is_ollama(service):
            assert "ports" not in service, f"{name} publishes ports"
            assert service.get("network_mode") != "host", f"{name} on the host's network"


def test_prod_publishes_ports_on_caddy_only() -> None:
    published = {name for name, s in services(COMPOSE_PROD).items() if s.get("ports")}
    assert published == {"caddy"}
    ports = [str(p) for p in services(COMPOSE_PROD)["caddy"]["ports"]]
    assert {"80:80", "443:443"} <= set(ports)


def test_dev_publishes_the_gateway_on_loopback_8080_only() -> None:
    published = {name: s["ports"] for name, s in services(COMPOSE_DEV).items() if s.get("ports")}
    assert list(published) == ["gateway"]
    assert published["gateway"] == ["127.0.0.1:8080:8080"]
    assert "caddy" not in services(COMPOSE_DEV)
    assert not any(is_ollama(s) for s in services(COMPOSE_DEV).values())


# Every backend of each file; the dev stack has no ollama (it uses the host's).
BACKENDS = pytest.mark.parametrize(
    ("path", "name"),
    [
        (COMPOSE_PROD, "ollama"),
        (COMPOSE_PROD, "postgres"),
        (COMPOSE_PROD, "redis"),
        (COMPOSE_DEV, "postgres"),
        (COMPOSE_DEV, "redis"),
    ],
    ids=["prod-ollama", "prod-postgres", "prod-redis", "dev-postgres", "dev-redis"],
)
STATE_DIRECTORIES = {
    "postgres": "/var/lib/postgresql/data",
    "redis": "/data",
    "ollama": "/root/.ollama",
}


@BACKENDS
def test_backends_sit_on_internal_networks_only(path: Path, name: str) -> None:
    networks = service_networks(services(path)[name])
    assert networks
    assert set(networks) <= internal_networks(path), f"{name} on {networks}"


def test_prod_only_caddy_reaches_outside_besides_the_model_puller() -> None:
    internal = internal_networks(COMPOSE_PROD)
    outside = {
        name
        for name, service in services(COMPOSE_PROD).items()
        if not set(service_networks(service)) <= internal
    }
    # ollama-pull is a one-shot, profile-only job with egress for downloads; no ports.
    assert outside == {"caddy", "ollama-pull"}
    puller = services(COMPOSE_PROD)["ollama-pull"]
    assert puller.get("profiles") == ["models"]
    assert not set(service_networks(puller)) & set(
        service_networks(services(COMPOSE_PROD)["gateway"])
    )


def test_prod_ollama_shares_its_network_with_the_gateway_alone() -> None:
    all_services = services(COMPOSE_PROD)
    for network in service_networks(all_services["ollama"]):
        members = {n for n, s in all_services.items() if network in service_networks(s)}
        assert members == {"ollama", "gateway"}, f"{network}: {members}"


def test_prod_gateway_trusts_forwarded_for_from_the_caddy_network_only() -> None:
    document = load_compose(COMPOSE_PROD)
    gateway = document["services"]["gateway"]
    shared = set(service_networks(gateway)) & set(service_networks(document["services"]["caddy"]))
    assert len(shared) == 1
    (frontend,) = shared
    subnets = [c["subnet"] for c in document["networks"][frontend]["ipam"]["config"]]
    assert environment(gateway)["TRUSTED_PROXY_IPS"] == subnets[0]


@BOTH
def test_healthchecks_and_start_order(path: Path) -> None:
    all_services = services(path)
    postgres = command_text(all_services["postgres"]["healthcheck"]["test"])
    redis = command_text(all_services["redis"]["healthcheck"]["test"])
    gateway = all_services["gateway"]
    assert "pg_isready" in postgres
    assert "redis-cli" in redis
    assert "ping" in redis
    assert "/healthz" in command_text(gateway["healthcheck"]["test"])
    for dependency in ("postgres", "redis"):
        assert gateway["depends_on"][dependency]["condition"] == "service_healthy"
    if "caddy" in all_services:
        assert all_services["caddy"]["depends_on"]["gateway"]["condition"] == "service_healthy"
        assert "healthcheck" in all_services["caddy"]
    if "ollama" in all_services:
        assert "healthcheck" in all_services["ollama"]


@BOTH
def test_gateway_healthcheck_is_the_images_own(path: Path) -> None:
    test = services(path)["gateway"]["healthcheck"]["test"]
    assert test == ["CMD", *dockerfile_healthcheck()]


@BOTH
def test_redis_keeps_an_append_only_file(path: Path) -> None:
    redis = services(path)["redis"]
    assert re.search(r"--appendonly\s+yes", command_text(redis["command"]))


@BACKENDS
def test_state_lives_in_named_volumes(path: Path, name: str) -> None:
    mount = STATE_DIRECTORIES[name]
    document = load_compose(path)
    service = document["services"][name]
    sources = {str(v).split(":")[1]: str(v).split(":")[0] for v in service["volumes"]}
    assert mount in sources, f"{name} keeps {mount} in the container's writable layer"
    assert sources[mount] in document["volumes"], f"{name}: {sources[mount]} is not named"


@BOTH
def test_images_are_pinned(path: Path) -> None:
    for name, service in services(path).items():
        if "build" in service:
            continue
        image = str(service["image"])
        assert re.search(r":\d+\.\d+(\.\d+)?(-[\w.]+)?$", image), f"{name}: {image}"


@BOTH
def test_no_secret_is_written_into_the_file(path: Path) -> None:
    text = path.read_text()
    # Credentials inside URLs come from variables.
    for password in re.findall(r"://[^:/@\s]*:([^@\s]+)@", text):
        assert password.startswith("${"), f"hard-coded password in a URL: {password}"
    for name, service in services(path).items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:?\?[^}]*)?\}", value), f"{name}.{key}"


@BOTH
def test_the_caddyfile_and_build_context_exist(path: Path) -> None:
    for name, service in services(path).items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (REPO_ROOT / source).is_file(), f"{name} mounts missing {source}"
        if "build" in service:
            assert (REPO_ROOT / service["build"]["context"] / "Dockerfile").is_file()


# --- with Docker Compose itself (parses and interpolates; needs no engine) -------------

COMPOSE = compose_command()
needs_compose = pytest.mark.skipif(
    COMPOSE is None, reason="Docker Compose v2 not installed (.ci/install-ops-tools adds it)"
)


def run_compose(path: Path, env_file: dict[str, str], tmp_path: Path, *args: str) -> Any:
    """`docker compose config` on a copy of `path` beside an `.env` with `env_file`."""
    assert COMPOSE is not None
    shutil.copy(path, tmp_path / path.name)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env_file.items()))
    clean_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
        [*COMPOSE, "-f", str(tmp_path / path.name), "--profile", "models", "config", *args],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def complete_env(path: Path) -> dict[str, str]:
    return {name: f"value-of-{name.lower()}" for name in REQUIRED_SECRETS[path]}


@needs_compose
@BOTH
def test_compose_accepts_the_file(path: Path, tmp_path: Path) -> None:
    result = run_compose(path, complete_env(path), tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr


@needs_compose
@pytest.mark.parametrize(
    ("path", "variable"),
    [(path, variable) for path, names in REQUIRED_SECRETS.items() for variable in names],
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_compose_refuses_to_start_without_each_secret(
    path: Path, variable: str, tmp_path: Path
) -> None:
    env = complete_env(path)
    del env[variable]
    result = run_compose(path, env, tmp_path, "--quiet")
    assert result.returncode != 0
    assert variable in result.stderr


@needs_compose
def test_compose_resolves_the_gateway_wiring(tmp_path: Path) -> None:
    result = run_compose(COMPOSE_PROD, complete_env(COMPOSE_PROD), tmp_path, "--format", "json")
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    gateway = resolved["services"]["gateway"]["environment"]
    assert gateway["DATABASE_URL"] == (
        "postgresql+asyncpg://neuronetz:value-of-postgres_password@postgres:5432/neuronetz"
    )
    assert gateway["REDIS_URL"] == "redis://:value-of-redis_password@redis:6379/0"
    assert gateway["OLLAMA_BASE_URL"] == "http://ollama:11434"
    assert gateway["METRICS_TOKEN"] == "value-of-metrics_token"
    ollama = resolved["services"]["ollama"]
    assert "ports" not in ollama
    assert all(resolved["networks"][n].get("internal") for n in ollama["networks"])


@needs_compose
def test_the_unedited_env_example_is_refused(tmp_path: Path) -> None:
    # Copying the example and forgetting to fill it in must not start a stack without
    # secrets: compose names what is missing.
    example = ENV_PRODUCTION_EXAMPLE.read_text()
    values = dict(
        line.split("=", 1) for line in example.splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    result = run_compose(COMPOSE_PROD, values, tmp_path, "--quiet")
    assert result.returncode != 0
    assert any(name in result.stderr for name in REQUIRED_SECRETS[COMPOSE_PROD])
