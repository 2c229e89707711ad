"""Processes the deployment tests run: the gateway as the image runs it, Caddy, and tools.

Everything listens on 127.0.0.1 only and is stopped by the test that started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.files import CADDYFILE
from tests.support.databases import REDIS_URL

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0

# Exit codes of MDWE_WRAPPER: the kernel cannot do it / it did not take effect.
MDWE_UNSUPPORTED = 77
MDWE_INEFFECTIVE = 78

# Runs argv[1:] with PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN) in force: the kernel's own
# form of systemd's MemoryDenyWriteExecute= (no writable+executable mappings, no
# mprotect() adding PROT_EXEC), inherited across execve().
MDWE_WRAPPER = """
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.exit(78)
os.execv(sys.argv[1], sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET, without any proxy from the environment."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_serving(url: str, process: subprocess.Popen[bytes]) -> None:
    """Poll `url` until it answers 200; fail early if `process` died."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise AssertionError(f"process exited with {process.returncode}:\n{output}")
        with contextlib.suppress(OSError):
            if http_get(url, timeout=1.0)[0] == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {START_TIMEOUT_SECONDS} s")


def stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    """SIGTERM, as Docker and systemd send it; the exit code and everything printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output.decode(errors="replace") if output else ""


# --- the gateway -----------------------------------------------------------------------


def gateway_environment(database_url: str, port: int) -> dict[str, str]:
    """The environment the image gives the gateway, pointed at the test services."""
    # A clean environment: nothing from a developer's shell or `.env` leaks in.
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/nonexistent"),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "OLLAMA_BASE_URL": "http://127.0.0.1:9",
        "MODEL_DISCOVERY_ENABLED": "false",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_WORKERS": "1",
        "LOG_FORMAT": "console",
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class RunningGateway:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_gateway(
    executable: Path,
    env: Mapping[str, str],
    cwd: Path,
    wrapper: list[str] | None = None,
) -> RunningGateway:
    """`<executable> serve` (migrations, then uvicorn), waited for until /healthz is 200."""
    port = int(env["GATEWAY_PORT"])
    process = subprocess.Popen(
        [*(wrapper or []), str(executable), "serve"],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/healthz", process)
    except BaseException:
        stop(process)
        raise
    return RunningGateway(process, port)


def mdwe_wrapper() -> list[str]:
    return [sys.executable, "-c", MDWE_WRAPPER]


# --- Caddy -----------------------------------------------------------------------------


@contextlib.contextmanager
def caddy_in_front_of(upstream_port: int, home: Path) -> Iterator[str]:
    """`caddy run` on the example Caddyfile, served over plain HTTP on loopback.

    Only the site address changes (DOMAIN=http://127.0.0.1:<port>: no certificate, no
    ACME); every directive is the example's own. Yields the base URL.
    """
    caddy = shutil.which("caddy")
    assert caddy is not None
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "DOMAIN": f"http://127.0.0.1:{port}",
        "ACME_EMAIL": "ops@example.com",
        "GATEWAY_UPSTREAM_HOST": "127.0.0.1",
        "GATEWAY_UPSTREAM_PORT": str(upstream_port),
        "CADDY_ADMIN": "off",
    }
    process = subprocess.Popen(
        [caddy, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError(f"caddy exited:\n{stop(process)[1]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert time.monotonic() < deadline, "caddy did not start listening"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


# --- tools -----------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    """`docker compose` or a standalone Compose v2, when either is installed."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        result = subprocess.run(
            [*command, "version"], capture_output=True, text=True, check=False, timeout=30
        )
        if result.returncode == 0 and "v2." in result.stdout:
            return command
    return None
