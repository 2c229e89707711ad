"""`model_upstreams`: discovery records every server that has a model (docs/UPSTREAMS.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.admin.models import register_model
from neuronetz_gateway.catalog.discovery import DiscoveryTask
from neuronetz_gateway.catalog.models import Catalog
from neuronetz_gateway.db.engine import session_factory
from neuronetz_gateway.db.tables import Model, ModelUpstream
from neuronetz_gateway.resources import create_upstream_session
from tests.catalog.conftest import discovery_settings
from tests.conftest import make_settings
from tests.support.tags_server import TagsServer, running_tags_server


@pytest.fixture
async def upstream_session(catalog_database_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    session = create_upstream_session(make_settings(catalog_database_url))
    yield session
    await session.close()


@pytest.fixture
def servers() -> Iterator[tuple[TagsServer, TagsServer, TagsServer]]:
    with running_tags_server() as a, running_tags_server() as b, running_tags_server() as c:
        yield a, b, c


async def holders_in_db(engine: AsyncEngine) -> dict[str, set[str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(ModelUpstream.model_name, ModelUpstream.upstream))
        holders: dict[str, set[str]] = {}
        for name, upstream in rows:
            holders.setdefault(name, set()).add(upstream)
        return holders


async def availability(engine: AsyncEngine) -> dict[str, bool]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(Model.name, Model.available))
        return {row.name: row.available for row in rows}


async def test_every_server_that_has_a_model_is_recorded_and_routed_to(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    servers: tuple[TagsServer, TagsServer, TagsServer],
) -> None:
    a, b, c = servers
    a.serve("shared:1b", "only-a:1b")
    b.serve("shared:1b", "both:1b")
    c.serve("both:1b")
    catalog = Catalog()
    settings = discovery_settings(catalog_database_url, a.url, b.url, c.url)
    task = DiscoveryTask(catalog_engine, upstream_session, settings, catalog)

    await task.run_once()

    assert await holders_in_db(catalog_engine) == {
        "shared:1b": {a.url, b.url},
        "only-a:1b": {a.url},
        "both:1b": {b.url, c.url},
    }
    assert {m.name: m.upstreams for m in catalog.models()} == {
        "both:1b": {b.url, c.url},
        "only-a:1b": {a.url},
        "shared:1b": {a.url, b.url},
    }


async def test_a_failed_server_keeps_its_models_and_one_that_answered_loses_them(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    servers: tuple[TagsServer, TagsServer, TagsServer],
) -> None:
    a, b, c = servers
    for server in servers:
        server.serve("shared:1b")
    catalog = Catalog()
    settings = discovery_settings(catalog_database_url, a.url, b.url, c.url)
    task = DiscoveryTask(catalog_engine, upstream_session, settings, catalog)
    await task.run_once()

    # a answers without it, b fails (no information), c still has it.
    a.serve()
    b.status = 500
    result = await task.run_once()

    assert result is not None
    assert result.vanished == ()
    assert await holders_in_db(catalog_engine) == {"shared:1b": {b.url, c.url}}
    shared = catalog.get("shared:1b")
    assert shared is not None
    assert shared.upstreams == {b.url, c.url}

    # c drops it too: the failed b may still have it, so it stays available.
    c.serve()
    result = await task.run_once()

    assert result is not None
    assert result.vanished == ()
    assert await holders_in_db(catalog_engine) == {"shared:1b": {b.url}}
    assert await availability(catalog_engine) == {"shared:1b": True}

    # b answers without it: no server has it any more.
    b.status = 200
    b.serve()
    result = await task.run_once()

    assert result is not None
    assert result.vanished == ("shared:1b",)
    assert await holders_in_db(catalog_engine) == {}
    assert await availability(catalog_engine) == {"shared:1b": False}
    assert catalog.names() == frozenset()


async def test_a_model_pinned_by_hand_is_routed_to_its_server_only(
    catalog_engine: AsyncEngine,
) -> None:
    async with catalog_engine.begin() as connection:
        await connection.execute(
            sa.insert(Model),
            [
                {"name": "pinned:1b", "available": True, "upstream": "http://gpu-2:11434"},
                {"name": "anywhere:1b", "available": True, "upstream": None},
            ],
        )
    catalog = Catalog()

    await catalog.reload(catalog_engine)

    pinned, anywhere = catalog.get("pinned:1b"), catalog.get("anywhere:1b")
    assert pinned is not None
    assert pinned.upstreams == {"http://gpu-2:11434"}
    assert anywhere is not None
    assert anywhere.upstreams == frozenset()


async def test_pinning_a_discovered_model_to_one_server(
    catalog_engine: AsyncEngine, catalog_database_url: str
) -> None:
    a, b = "http://a:11434", "http://b:11434"
    settings = make_settings(catalog_database_url, ollama_base_urls=f"{a},{b}")
    now = datetime.now(UTC)
    async with catalog_engine.begin() as connection:
        await connection.execute(
            sa.insert(Model).values(name="shared:1b", available=True, upstream=a)
        )
        await connection.execute(
            sa.insert(ModelUpstream),
            [{"model_name": "shared:1b", "upstream": u, "last_seen_at": now} for u in (a, b)],
        )

    async with session_factory(catalog_engine)() as session:
        pinned = await register_model(session, settings, "shared:1b", upstream=b)
        again = await register_model(session, settings, "shared:1b", upstream=b)

    assert pinned.changed is True
    assert again.changed is False
    assert await holders_in_db(catalog_engine) == {"shared:1b": {b}}
    catalog = Catalog()
    await catalog.reload(catalog_engine)
    shared = catalog.get("shared:1b")
    assert shared is not None
    assert shared.upstream == b
    assert shared.upstreams == {b}
