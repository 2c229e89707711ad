"""A minimal stand-in for an Ollama server's `GET /api/tags`, for discovery tests.

It runs in its own thread and event loop, so sync tests (the CLI runs `asyncio.run`)
and async tests can both use it. Tests change `models` / `status` / `body` between
polls and read `requests` to see whether the gateway asked at all. The full Ollama
test double in tests/doubles/ is meant to replace this once it lands.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web

MODIFIED_AT = "2024-07-23T10:15:30.123456789+02:00"


def tags_entry(
    name: str, *, digest: str | None = None, size: int = 4_661_224_676
) -> dict[str, Any]:
    """One model of `/api/tags` in Ollama's wire format (docs/REFERENCE.md §9)."""
    return {
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": size,
        "digest": digest or hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "8.0B",
            "quantization_level": "Q4_K_M",
        },
    }


class TagsServer:
    """Serves `{"models": [...]}` built from `models`, or `body` verbatim when set."""

    def __init__(self) -> None:
        self.models: list[dict[str, Any]] = []
        self.status = 200
        self.body: bytes | None = None
        self.requests = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def serve(self, *names: str) -> None:
        self.models = [tags_entry(name) for name in names]

    async def _tags(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = self.body if self.body is not None else orjson.dumps({"models": self.models})
        return web.Response(body=body, status=self.status, content_type="application/json")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/tags", self._tags)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def running_tags_server() -> Iterator[TagsServer]:
    server = TagsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# Nothing listens on the discard port: connections are refused at once.
UNREACHABLE_URL = "http://127.0.0.1:9"
