"""The calibration proxy: the gateway's ASGI server and upstream client, no features.

It forwards method, path and body to the upstream and relays the answer: whole when
the upstream gave a length, else each upstream read as its own ASGI message (as the
gateway's relay does). No auth, limits, audit, parsing or header hygiene, so the
difference between it and the gateway is what the gateway's features cost.

The upstream client is the gateway's own forwarding client (`create_forwarding_client`,
docs/UPSTREAMS.md), so pooling and timeouts are identical. Served by uvicorn or
granian through the factory `bench.bare_proxy:create_app`, which reads the upstream
from `BENCH_UPSTREAM`.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.types import Receive, Scope, Send

from neuronetz_gateway.config import Settings
from neuronetz_gateway.proxy.http_client import UpstreamClient
from neuronetz_gateway.resources import create_forwarding_client

UPSTREAM_VARIABLE = "BENCH_UPSTREAM"


class BareProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.client: UpstreamClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                settings = Settings(_env_file=None, ollama_base_url=self.upstream)
                self.client = create_forwarding_client(settings)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.client is not None
        body = await _read_body(receive)
        headers = {"content-type": "application/json"} if body else {}
        response = await self.client.request(
            scope["method"], self.upstream, scope["path"], headers, body or None
        )
        async with response:
            content_type = response.headers.get("content-type", "application/json").encode()
            out: list[tuple[bytes, bytes]] = [(b"content-type", content_type)]
            if "content-length" in response.headers:
                content = await response.read()
                out.append((b"content-length", str(len(content)).encode()))
                await send(_start(response.status, out))
                await send({"type": "http.response.body", "body": content})
                return
            await send(_start(response.status, out))
            while chunk := await response.chunk():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def create_app() -> BareProxy:
    """Factory for the ASGI server (`--factory`)."""
    return BareProxy(os.environ[UPSTREAM_VARIABLE])
