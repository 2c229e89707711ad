"""Model discovery (docs/REFERENCE.md §4.8): poll every upstream's `/api/tags`, sync `models`, and
keep this process's `Catalog` in step with Postgres.

A poll that fails (connection, timeout, non-200, a body that is not a tags listing)
raises `DiscoveryError` and is recorded as failed, never as "no models": failures
never empty the catalog.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.catalog.models import Catalog, CatalogModel
from neuronetz_gateway.catalog.sync import SyncResult, sync_catalog, sync_upstreams
from neuronetz_gateway.config import Settings

__all__ = [
    "DiscoveryError",
    "DiscoveryTask",
    "SyncResult",
    "discover",
    "fetch_upstream_models",
    "parse_tags",
    "sync_catalog",
    "sync_upstreams",
    "upstream_label",
]

log = structlog.get_logger(__name__)

# A tags listing is a few hundred bytes per model; anything this large is not one.
MAX_TAGS_BYTES = 8 * 1024 * 1024
MAX_NAME_LENGTH = 255
MAX_DIGEST_LENGTH = 128
MAX_MODIFIED_AT_LENGTH = 64
# After a failed cycle, retry sooner than the regular interval: 2 s, 4 s, 8 s, ...
RETRY_BASE_SECONDS = 2.0


class DiscoveryError(Exception):
    """An upstream's model listing could not be read; `str()` is a short reason that
    names no host."""


def upstream_label(base_url: str) -> str:
    """The upstream as logs and operators see it: scheme, host and port only (no
    credentials or path)."""
    try:
        return str(URL(base_url).origin())
    except ValueError:
        return "<invalid upstream url>"


def _string(value: Any, max_length: int) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= max_length:
        return value
    return None


def _entry(entry: Any, upstream: str) -> CatalogModel | None:
    if not isinstance(entry, dict):
        return None
    name = _string(entry.get("name"), MAX_NAME_LENGTH) or _string(
        entry.get("model"), MAX_NAME_LENGTH
    )
    if name is None:
        return None
    size = entry.get("size")
    details = entry.get("details")
    return CatalogModel(
        name=name,
        digest=_string(entry.get("digest"), MAX_DIGEST_LENGTH),
        size_bytes=size if isinstance(size, int) and not isinstance(size, bool) else None,
        details=details if isinstance(details, dict) else None,
        modified_at=_string(entry.get("modified_at"), MAX_MODIFIED_AT_LENGTH),
        upstream=upstream,
    )


def parse_tags(body: bytes, upstream: str) -> list[CatalogModel]:
    """The models of an `/api/tags` body (docs/REFERENCE.md §9), tagged with `upstream`.

    Malformed entries are skipped; a body that is not a listing at all, or a non-empty
    listing without a single usable entry, raises `DiscoveryError`.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DiscoveryError("response is not JSON") from None
    if not isinstance(data, dict) or "models" not in data:
        raise DiscoveryError("response is not a model listing")
    entries = data["models"] if data["models"] is not None else []  # Go's nil slice
    if not isinstance(entries, list):
        raise DiscoveryError("response is not a model listing")
    models: dict[str, CatalogModel] = {}
    for entry in entries:
        model = _entry(entry, upstream)
        if model is not None:
            models.setdefault(model.name, model)
    if entries and not models:
        raise DiscoveryError("response lists no usable model")
    skipped = len(entries) - len(models)
    if skipped:
        log.warning(
            "model_discovery_entries_skipped", upstream=upstream_label(upstream), count=skipped
        )
    return list(models.values())


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_TAGS_BYTES:
        raise DiscoveryError("response too large")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_TAGS_BYTES:
            raise DiscoveryError("response too large")
    return bytes(body)


async def fetch_upstream_models(
    session: aiohttp.ClientSession,
    base_url: str,
    timeout: float,  # noqa: ASYNC109 - a per-request deadline, passed to aiohttp
) -> list[CatalogModel]:
    """GET `{base_url}/api/tags` and parse it; `DiscoveryError` on any failure."""
    url = base_url.rstrip("/") + "/api/tags"
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as response:
            if response.status != 200:
                raise DiscoveryError(f"status {response.status}")
            body = await _read_capped(response)
    except TimeoutError:
        raise DiscoveryError(f"no answer within {timeout:g} s") from None
    except aiohttp.ClientError as error:
        raise DiscoveryError(f"connection failed ({type(error).__name__})") from None
    return parse_tags(body, base_url)


async def _poll(
    session: aiohttp.ClientSession, base_url: str, timeout_seconds: float
) -> list[CatalogModel] | DiscoveryError:
    try:
        return await fetch_upstream_models(session, base_url, timeout_seconds)
    except DiscoveryError as error:
        log.warning(
            "model_discovery_upstream_failed", upstream=upstream_label(base_url), reason=str(error)
        )
        return error


async def discover(
    engine: AsyncEngine,
    session: aiohttp.ClientSession,
    upstreams: Sequence[str],
    timeout_seconds: float,
    now: datetime | None = None,
) -> SyncResult:
    """Poll every upstream concurrently and sync what the reachable ones report."""
    outcomes = await asyncio.gather(*(_poll(session, url, timeout_seconds) for url in upstreams))
    fetched = {
        url: None if isinstance(outcome, DiscoveryError) else outcome
        for url, outcome in zip(upstreams, outcomes, strict=True)
    }
    reasons = {
        url: str(outcome)
        for url, outcome in zip(upstreams, outcomes, strict=True)
        if isinstance(outcome, DiscoveryError)
    }
    result = await sync_upstreams(engine, fetched, now or datetime.now(UTC), configured=upstreams)
    result = replace(
        result, failure_reasons=tuple(reasons.get(u, "") for u in result.failed_upstreams)
    )
    if result.changed or result.failed_upstreams:
        log.info(
            "model_discovery_synced",
            added=len(result.added),
            reappeared=len(result.reappeared),
            updated=len(result.updated),
            vanished=len(result.vanished),
            unchanged=result.unchanged,
            failed_upstreams=[upstream_label(u) for u in result.failed_upstreams],
        )
    return result


class DiscoveryTask(BackgroundTask):
    """The background loop of one process.

    With `MODEL_DISCOVERY_ENABLED` it polls every upstream each
    `MODEL_DISCOVERY_INTERVAL_SECONDS` and syncs `models`; disabled, it makes no
    upstream request at all. Either way each cycle ends by reloading the `Catalog`
    from Postgres, so models written by other replicas or the CLI appear here. A failed
    cycle is logged and retried sooner (with backoff up to the interval).
    """

    name = "model-discovery"

    def __init__(
        self,
        engine: AsyncEngine,
        upstream_session: aiohttp.ClientSession,
        settings: Settings,
        catalog: Catalog,
    ) -> None:
        self._engine = engine
        self._session = upstream_session
        self._settings = settings
        self._catalog = catalog

    async def start(self) -> None:
        """Load the catalog from Postgres now, then poll in the background.

        The first poll runs in the background so an unreachable upstream cannot delay
        start-up; until it ends, the catalog is what Postgres had.
        """
        if self.started:
            return
        try:
            await self._catalog.reload(self._engine)
        except Exception as error:  # noqa: BLE001 - the loop retries; start-up goes on
            log.warning("model_catalog_reload_failed", error=type(error).__name__)
        self.start_task()

    async def run_once(self) -> SyncResult | None:
        """One cycle. None when discovery is disabled (the catalog was only reloaded);
        else the sync's result, whose `failed_upstreams` names unreachable servers.
        Raises only for database errors."""
        if not self._settings.model_discovery_enabled:
            await self._catalog.reload(self._engine)
            return None
        result = await discover(
            self._engine,
            self._session,
            self._settings.upstream_urls,
            self._settings.model_discovery_timeout_seconds,
        )
        await self._catalog.reload(self._engine)
        return result

    async def run(self) -> None:
        interval = self._settings.model_discovery_interval_seconds
        failures = 0
        announced = False
        if not self._settings.model_discovery_enabled:
            await asyncio.sleep(interval)  # start() has just loaded the catalog
        while True:
            try:
                result = await self.run_once()
                failed = result is not None and bool(result.failed_upstreams)
            except Exception as error:  # noqa: BLE001 - the loop must outlive any failure
                log.warning("model_discovery_cycle_failed", error=type(error).__name__)
                failed = True
            if not failed and not announced:
                # Once per process: operators (and tests) learn the catalog is current.
                log.info("model_catalog_ready", models=len(self._catalog))
                announced = True
            failures = failures + 1 if failed else 0
            delay = interval
            if failures:
                delay = min(interval, RETRY_BASE_SECONDS * 2 ** min(failures - 1, 16))
            await asyncio.sleep(delay)
