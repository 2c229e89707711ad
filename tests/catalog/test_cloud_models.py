"""Cloud models (docs/REFERENCE.md §11): discovery records them but never makes them
available; `register_model(cloud=True)` is the operator's way in."""

from __future__ import annotations

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.admin import models as admin
from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.catalog.discovery import DiscoveryTask
from neuronetz_gateway.catalog.models import Catalog, is_cloud_model
from neuronetz_gateway.db.tables import Model
from tests.catalog.conftest import discovery_settings, models_in_db
from tests.support.tags_server import TagsServer

CLOUD = "gpt-oss:120b-cloud"


@pytest.mark.parametrize(
    ("name", "cloud"),
    [
        ("gpt-oss:120b-cloud", True),
        ("kimi-k2:1t-cloud", True),
        ("deepseek-v3.1:671b-CLOUD", True),
        ("glm-4.6:cloud", True),
        ("llama3.1:8b:cloud", True),  # Ollama's explicit source suffix
        (" qwen3:cloud ", True),
        ("llama3.1:8b", False),
        ("cloud:latest", False),
        ("my-cloud", False),  # no tag: the name, not the tag, ends in cloud
        ("registry.example:5000/x-cloud", False),  # a port, not a tag
        ("llama3.1:8b:local", False),
    ],
)
def test_is_cloud_model_as_ollama_decides_it(name: str, cloud: bool) -> None:
    assert is_cloud_model(name) is cloud


async def test_discovery_records_cloud_models_but_never_makes_them_available(
    catalog_engine: AsyncEngine,
    catalog_database_url: str,
    upstream_session: aiohttp.ClientSession,
    tags_server: TagsServer,
) -> None:
    tags_server.serve("llama3:latest", CLOUD)
    catalog = Catalog()
    settings = discovery_settings(catalog_database_url, tags_server.url)
    task = DiscoveryTask(catalog_engine, upstream_session, settings, catalog)

    first = await task.run_once()
    again = await task.run_once()

    assert first is not None
    assert first.added == ("gpt-oss:120b-cloud", "llama3:latest")
    assert first.withheld == (CLOUD,)
    assert again is not None
    assert not again.changed  # a withheld model does not count as a change every cycle
    rows = await models_in_db(catalog_engine)
    assert rows[CLOUD]["available"] is False
    assert rows[CLOUD]["digest"] is not None  # recorded like any other
    assert catalog.names() == {"llama3:latest"}

    async with AsyncSession(catalog_engine) as session:
        await admin.register_model(session, settings, CLOUD, cloud=True)
    approved = await task.run_once()
    assert approved is not None
    assert approved.withheld == ()
    assert catalog.names() == {"llama3:latest", CLOUD}

    async with AsyncSession(catalog_engine) as session:
        await admin.unregister_model(session, CLOUD)
    await task.run_once()
    assert (await models_in_db(catalog_engine))[CLOUD]["cloud_approved"] is False
    assert catalog.names() == {"llama3:latest"}


async def test_an_available_unapproved_cloud_row_stays_out_of_the_catalog(
    catalog_engine: AsyncEngine,
) -> None:
    """As a replica of an older version might write it."""
    async with catalog_engine.begin() as connection:
        await connection.execute(sa.insert(Model).values(name=CLOUD, available=True))
    catalog = Catalog()
    await catalog.reload(catalog_engine)
    assert CLOUD not in catalog


async def test_registering_a_cloud_model_needs_the_flag(
    catalog_engine: AsyncEngine, catalog_database_url: str
) -> None:
    settings = discovery_settings(catalog_database_url, "http://127.0.0.1:1")
    async with AsyncSession(catalog_engine) as session:
        with pytest.raises(AdminError, match=r"is a cloud model.*--cloud"):
            await admin.register_model(session, settings, CLOUD)
        with pytest.raises(AdminError, match="is not a cloud model"):
            await admin.register_model(session, settings, "llama3:8b", cloud=True)
        change = await admin.register_model(session, settings, CLOUD, cloud=True)
    assert change.changed
    assert change.model.available
    assert change.model.cloud_approved
