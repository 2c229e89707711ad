"""The in-memory catalog: lookups and name resolution, and reloads from Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.catalog.models import Catalog, CatalogModel
from neuronetz_gateway.db.tables import Model


def test_get_resolves_a_missing_tag_to_latest() -> None:
    catalog = Catalog(
        [
            CatalogModel("llama3:latest"),
            CatalogModel("llama3:8b"),
            CatalogModel("registry.local:5000/team/coder:latest"),
        ]
    )
    assert catalog.get("llama3:8b") == CatalogModel("llama3:8b")
    assert catalog.get("llama3") == CatalogModel("llama3:latest")
    # The ':' of a registry port is not a tag.
    found = catalog.get("registry.local:5000/team/coder")
    assert found is not None
    assert found.name == "registry.local:5000/team/coder:latest"
    assert catalog.get("llama3:70b") is None
    assert catalog.get("Llama3") is None
    assert "llama3" in catalog
    assert catalog.names() == {
        "llama3:latest",
        "llama3:8b",
        "registry.local:5000/team/coder:latest",
    }


def test_replace_swaps_the_whole_catalog() -> None:
    catalog = Catalog([CatalogModel("b:1"), CatalogModel("a:1")])
    assert [m.name for m in catalog.models()] == ["a:1", "b:1"]
    catalog.replace([CatalogModel("c:1")])
    assert catalog.names() == {"c:1"}
    assert catalog.get("a:1") is None
    assert len(catalog) == 1


async def test_reload_reads_available_models_from_postgres(catalog_engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    async with catalog_engine.begin() as connection:
        await connection.execute(
            sa.insert(Model),
            [
                {
                    "name": "llama3:latest",
                    "digest": "d1",
                    "size_bytes": 123,
                    "details": {"family": "llama", "families": ["llama"]},
                    "modified_at": "2024-07-23T10:15:30.123456789+02:00",
                    "available": True,
                    "upstream": "http://ollama:11434",
                    "first_seen_at": now,
                    "last_seen_at": now,
                },
            ],
        )
        await connection.execute(
            sa.insert(Model).values(name="old:1b", available=False, first_seen_at=now)
        )
    catalog = Catalog([CatalogModel("stale:1b")])

    await catalog.reload(catalog_engine)

    assert catalog.names() == {"llama3:latest"}
    assert catalog.get("llama3") == CatalogModel(
        name="llama3:latest",
        digest="d1",
        size_bytes=123,
        details={"family": "llama", "families": ["llama"]},
        modified_at="2024-07-23T10:15:30.123456789+02:00",
        upstream="http://ollama:11434",
        # No model_upstreams rows: the recorded (or pinned) server is the only one.
        upstreams=frozenset({"http://ollama:11434"}),
    )
