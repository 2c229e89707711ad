"""A gateway served in the test's own event loop, for fault injection at a seam.

The real application (`create_app`) behind a real uvicorn server, on a loopback socket
the test binds first (a free port, no race with other test runs): requests that arrive
before start-up has finished wait in the socket's backlog. Because it runs in the
test's process, a test can patch one stage (`monkeypatch`) to fail and then watch what
a client, the audit log and the limiter see. `runtime` is the running `GatewayRuntime`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import structlog
import uvicorn

from neuronetz_gateway.app import GatewayApp, create_app
from neuronetz_gateway.config import Settings
from neuronetz_gateway.observability.logging import configure_logging
from neuronetz_gateway.runtime import GatewayRuntime


@dataclass(frozen=True)
class InProcessGateway:
    base_url: str
    app: GatewayApp

    @property
    def runtime(self) -> GatewayRuntime:
        runtime = self.app.holder.runtime
        if runtime is None:
            raise RuntimeError("the gateway is not running")
        return runtime


@contextmanager
def gateway_logging(settings: Settings) -> Iterator[None]:
    """The gateway's own logging (as `serve` configures it) for the block, then the test
    process's again. Tracebacks are plain text, as in production: structlog's default
    renders every frame's locals, which takes seconds for a deep request."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    configure_logging(settings.log_level, settings.log_format)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield
    finally:
        root.handlers[:], level, config = saved
        root.setLevel(level)
        structlog.reset_defaults()
        structlog.configure(**config)


@asynccontextmanager
async def serve_in_process(settings: Settings) -> AsyncIterator[InProcessGateway]:
    """Serve `settings`' gateway until the block ends (a graceful stop, like SIGTERM)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        lifespan="on",
        http="httptools",
        access_log=False,
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    with gateway_logging(settings):
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            yield InProcessGateway(f"http://127.0.0.1:{port}", app)
        finally:
            server.should_exit = True
            await serving
            listener.close()
