"""The README's start command on a machine without Postgres and Redis (docs/STANDALONE.md).

`neuronetz-gateway serve --demo` with no DATABASE_URL, no REDIS_URL and no DATA_DIR: the
database goes to `$XDG_DATA_HOME/neuronetz-gateway/`, limits live in the process, and the
CLI, run as another process like an operator would, changes what the server does within
a second.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.audit.cli import run_cli_in_process
from tests.doubles.ollama import OllamaDouble
from tests.support.processes import GatewayProcess, base_environment

CHAT = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture(scope="module")
def xdg_data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-data")


@pytest.fixture(scope="module")
def standalone(xdg_data_home: Path, double: OllamaDouble) -> Iterator[GatewayProcess]:
    env = {"XDG_DATA_HOME": str(xdg_data_home), "OLLAMA_BASE_URL": double.base_url}
    process = GatewayProcess(env, args=("--demo",))
    process.start()
    if process.wait_for_log("model_catalog_ready", timeout=15) is None:
        process.stop()
        raise RuntimeError(f"discovery did not sync:\n{process.logs()}")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def demo_key(standalone: GatewayProcess) -> str:
    match = re.search(r"^(nz_\w+)$", standalone.logs(), re.MULTILINE)
    assert match is not None, standalone.logs()
    return match.group(1)


def cli(xdg_data_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as an operator runs it on the same machine, in this (another) process.

    Without DATABASE_URL, as in the gateway's environment: `XDG_DATA_HOME` leads both
    to the same file."""
    result = run_cli_in_process(*args, env={"XDG_DATA_HOME": str(xdg_data_home)})
    assert result.returncode == 0, result.stderr
    return result


def cli_process(xdg_data_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own."""
    result = subprocess.run(
        [sys.executable, "-m", "neuronetz_gateway", *args],
        env={**base_environment(), "XDG_DATA_HOME": str(xdg_data_home)},
        cwd=xdg_data_home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def chat(gateway: GatewayProcess, key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(gateway.base_url + "/api/chat", json=CHAT, headers=headers, timeout=10)


def answered_within_1s(
    gateway: GatewayProcess, key: str, status: int, message: str = ""
) -> httpx.Response:
    """The first response with `status` whose body contains `message`: a change made
    just before must reach the server within a second."""
    started = time.monotonic()
    while True:
        response = chat(gateway, key)
        elapsed = time.monotonic() - started
        if response.status_code == status and message in response.text:
            return response
        assert elapsed < 1.0, f"still {response.status_code} after {elapsed:.2f}s"


def test_it_says_it_is_standalone(standalone: GatewayProcess, xdg_data_home: Path) -> None:
    ready = httpx.get(standalone.base_url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "mode": "standalone",
        "checks": {"database": "ok", "ollama": "ok"},
    }
    started = standalone.wait_for_log('"event":"gateway_started"', timeout=0)
    assert started is not None
    assert orjson.loads(started)["mode"] == "standalone"
    assert standalone.wait_for_log('"event":"standalone_mode"', timeout=0) is not None
    data_dir = xdg_data_home / "neuronetz-gateway"
    assert (data_dir / "gateway.db").is_file()
    assert data_dir.stat().st_mode & 0o777 == 0o700


def test_demo_key_is_served_and_limited_by_the_cli(
    standalone: GatewayProcess, demo_key: str, xdg_data_home: Path
) -> None:
    assert chat(standalone, "nz_" + "x" * 40).status_code == 401
    assert chat(standalone, demo_key).status_code == 200

    cli(xdg_data_home, "set-limits", "--tenant", "demo", "--rpm", "0")
    answered_within_1s(standalone, demo_key, 429, "requests per minute")

    cli(xdg_data_home, "set-limits", "--tenant", "demo", "--rpm", "none", "--daily-tokens", "0")
    refused = answered_within_1s(standalone, demo_key, 429, "token budget")
    assert refused.json()["error"].startswith("daily token budget of the ")

    cli(xdg_data_home, "set-limits", "--tenant", "demo", "--daily-tokens", "none")
    answered_within_1s(standalone, demo_key, 200)
    usage = orjson.loads(cli(xdg_data_home, "usage", "--tenant", "demo", "--json").stdout)
    assert usage["totals"]["requests"] >= 2


def test_cli_revocation_reaches_the_server_within_1s(
    standalone: GatewayProcess, xdg_data_home: Path
) -> None:
    created = cli(xdg_data_home, "create-key", "--tenant", "demo", "--name", "revoke-me", "--json")
    key = orjson.loads(created.stdout)
    assert chat(standalone, key["key"]).status_code == 200

    cli_process(xdg_data_home, "revoke-key", "--prefix", key["prefix"])
    # The CLI's commit happens just before it exits: time from its return is an upper bound.
    answered_within_1s(standalone, key["key"], 401)


def test_several_workers_without_redis_are_refused(tmp_path: Path) -> None:
    """`serve --workers 2` (GATEWAY_WORKERS=2 is refused by `Settings`, tests/test_config.py)."""
    result = subprocess.run(
        [sys.executable, "-m", "neuronetz_gateway", "serve", "--workers", "2"],
        env={**base_environment(), "DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "GATEWAY_WORKERS: more than 1 needs REDIS_URL" in line
    assert not (tmp_path / "gateway.db").exists()
