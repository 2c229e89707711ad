"""`/healthz` and `/readyz` (docs/REFERENCE.md §5).

Readiness fails closed: a check that errors or times out counts as failing, and the
503 body names failing checks only (never an error text, host or address). With
several Ollama servers each is its own check (`ollama_0`, `ollama_1`, ... in
`OLLAMA_BASE_URLS` order); the gateway is ready while Postgres, Redis and at least one
of them answer, and reports `degraded` while some do not (docs/UPSTREAMS.md).
Every run of the checks is also exported as metrics (`neuronetz_ready`,
`neuronetz_readiness_check_ok{check}`); `/metrics` runs them (cached) before each scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import Response

from neuronetz_gateway.api.responses import json_response
from neuronetz_gateway.observability import metrics
from neuronetz_gateway.resources import Resources

CACHE_SECONDS = 1.0
UPSTREAM_CHECK = "ollama"

Check = Callable[[], Awaitable[None]]


@dataclass
class Readiness:
    """Runs the dependency checks, at most once per `CACHE_SECONDS`."""

    resources: Resources
    _cached_at: float = -1.0
    _cached: dict[str, bool] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def checks(self) -> dict[str, Check]:
        # Standalone mode (docs/STANDALONE.md): "database" is the SQLite file; no Redis.
        database = "database" if self.resources.settings.uses_sqlite else "postgres"
        checks: dict[str, Check] = {database: self._database}
        if self.resources.redis is not None:
            checks["redis"] = self._redis
        urls = self.resources.settings.upstream_urls
        for index, url in enumerate(urls):
            name = UPSTREAM_CHECK if len(urls) == 1 else f"{UPSTREAM_CHECK}_{index}"
            checks[name] = self._ollama(url)
        return checks

    async def results(self) -> dict[str, bool]:
        async with self._lock:
            if time.monotonic() - self._cached_at >= CACHE_SECONDS:
                self._cached = await self._run_all()
                self._cached_at = time.monotonic()
                self._export(self._cached)
            return dict(self._cached)

    @staticmethod
    def ready(results: dict[str, bool]) -> bool:
        """Every dependency answers, and at least one Ollama server does."""
        upstreams = [ok for name, ok in results.items() if name.startswith(UPSTREAM_CHECK)]
        others = [ok for name, ok in results.items() if not name.startswith(UPSTREAM_CHECK)]
        return all(others) and any(upstreams)

    def _export(self, results: dict[str, bool]) -> None:
        for name, ok in results.items():
            metrics.READINESS_CHECK_OK.labels(name).set(1 if ok else 0)
        metrics.READY.set(1 if self.ready(results) else 0)

    async def _run_all(self) -> dict[str, bool]:
        checks = self.checks()
        outcomes = await asyncio.gather(*(self._run(check) for check in checks.values()))
        return dict(zip(checks, outcomes, strict=True))

    async def _run(self, check: Check) -> bool:
        try:
            async with asyncio.timeout(self.resources.settings.readiness_timeout_seconds):
                await check()
        except Exception:  # noqa: BLE001 - any failure means "not ready", by design
            return False
        return True

    async def _database(self) -> None:
        async with self.resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def _redis(self) -> None:
        redis = self.resources.redis
        if redis is not None and await redis.execute("PING") != b"PONG":
            raise RuntimeError("unexpected reply to PING")

    def _ollama(self, base_url: str) -> Check:
        async def check() -> None:
            async with self.resources.upstream.get(
                base_url + "/api/version",
                timeout=aiohttp.ClientTimeout(
                    total=self.resources.settings.readiness_timeout_seconds
                ),
            ) as response:
                if response.status != 200:
                    raise RuntimeError("unexpected status")
                await response.read()

        return check


router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> Response:
    """200 while the process runs; touches no dependency."""
    return json_response({"status": "ok"})


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    """200 when ready (`degraded` while some Ollama server fails), else 503; both name
    the failing checks."""
    readiness: Readiness = request.app.state.readiness
    results = await readiness.results()
    failing = sorted(name for name, ok in results.items() if not ok)
    checks = {name: "ok" if ok else "failing" for name, ok in results.items()}
    mode = {"mode": "standalone"} if readiness.resources.settings.standalone else {}
    if not readiness.ready(results):
        return json_response(
            {"status": "unavailable", **mode, "failing": failing, "checks": checks},
            status_code=503,
        )
    if failing:
        return json_response({"status": "degraded", **mode, "failing": failing, "checks": checks})
    return json_response({"status": "ok", **mode, "checks": checks})
