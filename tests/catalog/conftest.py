"""Catalog tests run on their own database: discovery marks every model no upstream
reports as unavailable, which must not touch models other test modules rely on."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.engine import create_engine
from neuronetz_gateway.db.tables import Model
from neuronetz_gateway.observability.logging import configure_logging
from neuronetz_gateway.resources import create_upstream_session
from tests.conftest import make_settings
from tests.support.databases import create_migrated_database, drop_database
from tests.support.tags_server import TagsServer, running_tags_server


@pytest.fixture(scope="session")
def catalog_database_url() -> Iterator[str]:
    url = create_migrated_database("catalog")
    yield url
    drop_database(url)


@pytest.fixture
async def catalog_engine(catalog_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the catalog database, whose `models` table starts empty."""
    engine = create_engine(catalog_database_url)
    async with engine.begin() as connection:
        await connection.execute(sa.delete(Model))
    yield engine
    await engine.dispose()


@pytest.fixture
def tags_server() -> Iterator[TagsServer]:
    with running_tags_server() as server:
        yield server


class _CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The gateway's JSON log lines on stdout, as an operator would read them."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    saved_structlog = structlog.get_config()
    configure_logging("INFO", "json")
    # Cached loggers would keep this configuration after the test; other tests
    # (structlog.testing.capture_logs) rely on reconfiguring.
    structlog.configure(cache_logger_on_first_use=False)
    # capsys swaps sys.stdout only once the test body runs: resolve it per write.
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(_CurrentStdout())

    def read() -> list[dict[str, Any]]:
        lines = capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    yield read
    handlers, level = saved
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.configure(**saved_structlog)


@pytest.fixture
async def upstream_session(catalog_database_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    session = create_upstream_session(make_settings(catalog_database_url))
    yield session
    await session.close()


def discovery_settings(database_url: str, *upstreams: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ollama_base_urls": ",".join(upstreams),
        "model_discovery_enabled": True,
        "model_discovery_timeout_seconds": 2.0,
    }
    return make_settings(database_url, **(values | overrides))


async def models_in_db(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(Model))
        return {row.name: dict(row._mapping) for row in rows}
