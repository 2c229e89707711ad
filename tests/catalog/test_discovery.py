"""Model discovery (docs/REFERENCE.md §4.8) against a real HTTP server and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.catalog.discovery import (
    DiscoveryError,
    DiscoveryTask,
    fetch_upstream_models,
    sync_catalog,
)
from neuronetz_gateway.catalog.models import Catalog
from neuronetz_gateway.db.tables import Model
from tests.catalog.conftest import discovery_settings, models_in_db
from tests.support.tags_server import (
    MODIFIED_AT,
    UNREACHABLE_URL,
    TagsServer,
    running_tags_server,
    tags_entry,
)

Logs = Callable[[], list[dict[str, Any]]]


async def test_new_models_appear_in_postgres_and_the_catalog(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    tags_server: TagsServer,
) -> None:
    tags_server.serve("llama3:latest", "mistral:7b")
    catalog = Catalog()
    task = DiscoveryTask(
        catalog_engine,
        upstream_session,
        discovery_settings(catalog_database_url, tags_server.url),
        catalog,
    )

    result = await task.run_once()

    assert result is not None
    assert result.added == ("llama3:latest", "mistral:7b")
    assert result.failed_upstreams == ()
    rows = await models_in_db(catalog_engine)
    assert set(rows) == {"llama3:latest", "mistral:7b"}
    llama = rows["llama3:latest"]
    entry = tags_entry("llama3:latest")
    assert llama["available"] is True
    assert llama["upstream"] == tags_server.url
    assert llama["digest"] == entry["digest"]
    assert llama["size_bytes"] == entry["size"]
    assert llama["details"] == entry["details"]
    assert llama["modified_at"] == MODIFIED_AT
    assert catalog.names() == {"llama3:latest", "mistral:7b"}
    assert catalog.get("llama3") is not None


async def test_vanished_models_become_unavailable_and_reappear(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    tags_server: TagsServer,
) -> None:
    catalog = Catalog()
    task = DiscoveryTask(
        catalog_engine,
        upstream_session,
        discovery_settings(catalog_database_url, tags_server.url),
        catalog,
    )
    tags_server.serve("llama3:latest", "mistral:7b")
    await task.run_once()
    first_seen = (await models_in_db(catalog_engine))["mistral:7b"]["first_seen_at"]

    tags_server.serve("llama3:latest")
    vanished = await task.run_once()

    assert vanished is not None
    assert vanished.vanished == ("mistral:7b",)
    assert vanished.unchanged == 1
    rows = await models_in_db(catalog_engine)
    assert rows["mistral:7b"]["available"] is False
    assert catalog.names() == {"llama3:latest"}

    tags_server.serve("llama3:latest", "mistral:7b")
    tags_server.models[0]["digest"] = "f" * 64  # llama3 was re-pulled meanwhile
    back = await task.run_once()

    assert back is not None
    assert back.reappeared == ("mistral:7b",)
    assert back.updated == ("llama3:latest",)
    rows = await models_in_db(catalog_engine)
    assert rows["mistral:7b"]["available"] is True
    assert rows["mistral:7b"]["first_seen_at"] == first_seen
    assert rows["llama3:latest"]["digest"] == "f" * 64
    assert catalog.names() == {"llama3:latest", "mistral:7b"}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"error": "boom"}'),
        (200, b"<html>not ollama</html>"),
        (200, b'{"version": "0.5.1"}'),
        (200, b'{"models": [{"size": 1}]}'),
    ],
    ids=["status-500", "not-json", "not-a-listing", "no-usable-entry"],
)
async def test_a_failed_poll_leaves_the_catalog_unchanged(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    tags_server: TagsServer,
    json_logs: Logs,
    status: int,
    body: bytes,
) -> None:
    catalog = Catalog()
    task = DiscoveryTask(
        catalog_engine,
        upstream_session,
        discovery_settings(catalog_database_url, tags_server.url),
        catalog,
    )
    tags_server.serve("llama3:latest")
    await task.run_once()
    before = await models_in_db(catalog_engine)
    json_logs()

    tags_server.status, tags_server.body = status, body
    result = await task.run_once()

    assert result is not None
    assert result.failed_upstreams == (tags_server.url,)
    assert not result.changed
    assert await models_in_db(catalog_engine) == before
    assert catalog.names() == {"llama3:latest"}
    failures = [e for e in json_logs() if e["event"] == "model_discovery_upstream_failed"]
    assert len(failures) == 1
    assert failures[0]["level"] == "warning"
    assert failures[0]["upstream"] == tags_server.url


async def test_an_unreachable_upstream_leaves_the_catalog_unchanged(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    json_logs: Logs,
) -> None:
    now = datetime.now(UTC)
    async with catalog_engine.begin() as connection:
        await connection.execute(
            sa.insert(Model).values(
                name="llama3:latest", available=True, upstream=UNREACHABLE_URL, first_seen_at=now
            )
        )
    catalog = Catalog()
    task = DiscoveryTask(
        catalog_engine,
        upstream_session,
        discovery_settings(catalog_database_url, UNREACHABLE_URL),
        catalog,
    )

    result = await task.run_once()

    assert result is not None
    assert result.failed_upstreams == (UNREACHABLE_URL,)
    assert (await models_in_db(catalog_engine))["llama3:latest"]["available"] is True
    assert catalog.names() == {"llama3:latest"}
    events = [e for e in json_logs() if e["event"] == "model_discovery_upstream_failed"]
    assert [e["reason"] for e in events] == ["connection failed (ClientConnectorError)"]


async def test_fetch_refuses_a_failed_listing_instead_of_returning_none(
    upstream_session: aiohttp.ClientSession, tags_server: TagsServer
) -> None:
    tags_server.status = 503
    with pytest.raises(DiscoveryError, match="status 503"):
        await fetch_upstream_models(upstream_session, tags_server.url, 2.0)
    tags_server.status = 200
    tags_server.serve()
    assert await fetch_upstream_models(upstream_session, tags_server.url, 2.0) == []


async def test_an_empty_listing_is_the_truth_and_empties_the_catalog(
    catalog_engine: AsyncEngine, upstream_session: aiohttp.ClientSession, tags_server: TagsServer
) -> None:
    tags_server.serve("llama3:latest")
    fetched = await fetch_upstream_models(upstream_session, tags_server.url, 2.0)
    await sync_catalog(catalog_engine, fetched, tags_server.url, datetime.now(UTC))
    tags_server.serve()
    fetched = await fetch_upstream_models(upstream_session, tags_server.url, 2.0)

    result = await sync_catalog(catalog_engine, fetched, tags_server.url, datetime.now(UTC))

    assert result.vanished == ("llama3:latest",)
    assert (await models_in_db(catalog_engine))["llama3:latest"]["available"] is False


async def test_disabled_discovery_asks_no_upstream_and_reloads_from_postgres(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    tags_server: TagsServer,
) -> None:
    tags_server.serve("llama3:latest")
    catalog = Catalog()
    settings = discovery_settings(
        catalog_database_url, tags_server.url, model_discovery_enabled=False
    )
    task = DiscoveryTask(catalog_engine, upstream_session, settings, catalog)
    async with catalog_engine.begin() as connection:
        await connection.execute(sa.insert(Model).values(name="registered:1b", available=True))

    assert await task.run_once() is None

    assert tags_server.requests == 0
    assert catalog.names() == {"registered:1b"}
    assert set(await models_in_db(catalog_engine)) == {"registered:1b"}


async def test_several_upstreams_each_keep_their_models(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    tags_server: TagsServer,
) -> None:
    with running_tags_server() as second:
        tags_server.serve("shared:1b", "only-first:1b")
        second.serve("shared:1b", "only-second:1b")
        catalog = Catalog()
        settings = discovery_settings(catalog_database_url, tags_server.url, second.url)
        task = DiscoveryTask(catalog_engine, upstream_session, settings, catalog)

        await task.run_once()
        rows = await models_in_db(catalog_engine)
        assert {name: row["upstream"] for name, row in rows.items()} == {
            "shared:1b": tags_server.url,
            "only-first:1b": tags_server.url,
            "only-second:1b": second.url,
        }

        # The first server fails: its own models stay; the shared one moves to the
        # server that answered, so requests for it keep working.
        tags_server.status = 500
        result = await task.run_once()
        assert result is not None
        assert result.updated == ("shared:1b",)
        assert result.vanished == ()
        assert catalog.names() == {"shared:1b", "only-first:1b", "only-second:1b"}
        shared = catalog.get("shared:1b")
        assert shared is not None
        assert shared.upstream == second.url

        # The first server is back without "only-first": it vanishes; "shared" stays put.
        tags_server.status = 200
        tags_server.serve("shared:1b")
        result = await task.run_once()
        assert result is not None
        assert result.vanished == ("only-first:1b",)
        assert result.updated == ()
        rows = await models_in_db(catalog_engine)
        assert rows["shared:1b"]["upstream"] == second.url
        assert rows["only-first:1b"]["available"] is False

        # The second server drops "shared": it moves back to the first, never blinking out.
        second.serve("only-second:1b")
        result = await task.run_once()
        assert result is not None
        assert result.updated == ("shared:1b",)
        assert result.vanished == ()
        rows = await models_in_db(catalog_engine)
        assert rows["shared:1b"]["upstream"] == tags_server.url
        assert rows["shared:1b"]["available"] is True


async def test_the_background_task_polls_until_closed(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    tags_server: TagsServer,
) -> None:
    catalog = Catalog()
    settings = discovery_settings(
        catalog_database_url, tags_server.url, model_discovery_interval_seconds=0.05
    )
    task = DiscoveryTask(catalog_engine, upstream_session, settings, catalog)
    tags_server.serve("llama3:latest")
    await task.start()
    try:
        await wait_for(lambda: "llama3:latest" in catalog.names())
        tags_server.serve("llama3:latest", "new:1b")
        await wait_for(lambda: "new:1b" in catalog.names())
    finally:
        await task.aclose()
    polls = tags_server.requests
    await asyncio.sleep(0.2)  # several intervals: a closed task polls no more
    assert tags_server.requests == polls


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
