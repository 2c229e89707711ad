"""Starting the benchmark's processes: the stub, the gateway and the bare proxy.

The gateway runs exactly as in production (`neuronetz-gateway serve`: uvicorn with
uvloop and httptools, one worker) with every feature on, or under granian for the
server comparison. It is ready once the key sees the stub's models through it, i.e.
discovery has synced the catalog.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from bench.fixtures import BenchKey
from bench.processes import Service, free_port, python_command
from bench.rawhttp import BlockingConnection, render_request
from bench.stub import MODELS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GATEWAY_FACTORY = "neuronetz_gateway.app:create_app_from_env"
BARE_FACTORY = "bench.bare_proxy:create_app"


class Server(StrEnum):
    UVICORN = "uvicorn"
    GRANIAN = "granian"


def base_environment() -> dict[str, str]:
    """What a child needs (never the developer's gateway settings), plus the project."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env


def _asgi_command(server: Server, factory: str, port: int) -> list[str]:
    if server is Server.UVICORN:
        return python_command(
            "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "on", "--no-access-log",
            "--no-proxy-headers", "--no-server-header", "--log-level", "warning",
        )  # fmt: skip
    return python_command(
        "-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "1", "--workers", "1",
        "--runtime-threads", "1", "--no-ws", "--log-level", "warning", factory,
    )  # fmt: skip


def start_stub(workdir: Path, *, chunks: int, interval_ms: float) -> Service:
    port = free_port()
    command = python_command(
        "-m", "bench.stub", "--port", str(port), "--chunks", str(chunks),
        "--interval-ms", str(interval_ms),
    )  # fmt: skip
    return Service("stub", command, port=port, workdir=workdir, env=base_environment()).start()


def start_otlp_sink(workdir: Path) -> Service:
    """The collector a traced gateway exports to (`--tracing`): accepts and discards."""
    port = free_port()
    command = python_command("-m", "bench.otlp_sink", "--port", str(port))
    return Service("otlp-sink", command, port=port, workdir=workdir, env=base_environment()).start()


def tracing_environment(sink: Service) -> dict[str, str]:
    """What turns tracing on in a gateway: every request sampled, exported to `sink`
    with the SDK's default batching (the worst case an operator can configure)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.base_url,
        "OTEL_SERVICE_NAME": "neuronetz-gateway-bench",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }


def start_bare(workdir: Path, upstream: str, server: Server = Server.UVICORN) -> Service:
    port = free_port()
    env = base_environment() | {"BENCH_UPSTREAM": upstream}
    command = _asgi_command(server, BARE_FACTORY, port)
    return Service(f"bare-{server}", command, port=port, workdir=workdir, env=env).start()


def gateway_environment(database_url: str, redis_url: str, upstream: str) -> dict[str, str]:
    """Production defaults except the connections (and logs as JSON to a file)."""
    return base_environment() | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "OLLAMA_BASE_URL": upstream,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "MODEL_DISCOVERY_ENABLED": "true",
        # One worker: the scenarios compare one process with the bare proxy and granian;
        # the workers scenario sets `auto` itself.
        "GATEWAY_WORKERS": "1",
        # Slots to spare: every request acquires and releases one (the queue's slots-free
        # cost), none waits. The contended queue is scenario 10 (bench/scenarios/queue.py).
        "OLLAMA_SLOTS": "10000",
    }


def start_gateway(
    workdir: Path,
    env: dict[str, str],
    key: BenchKey,
    server: Server = Server.UVICORN,
    name: str = "gateway",
) -> Service:
    port = free_port()
    if server is Server.UVICORN:
        command = python_command("-m", "neuronetz_gateway", "serve", "--skip-migrations")
        env = env | {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port)}
    else:
        command = _asgi_command(server, GATEWAY_FACTORY, port)
    service = Service(f"{name}-{server}", command, port=port, workdir=workdir, env=env)
    return service.start(ready=_sees_models(port, key))


def _sees_models(port: int, key: BenchKey) -> Callable[[], bool]:
    request = render_request(
        "GET", "/v1/models", port, headers={"Authorization": f"Bearer {key.secret}"}
    )

    def ready() -> bool:
        with contextlib.suppress(OSError):
            connection = BlockingConnection(port, timeout=2.0)
            try:
                status, body = connection.exchange(request)
            finally:
                connection.close()
            return status == 200 and all(model.encode() in body for model in MODELS)
        return False

    return ready
