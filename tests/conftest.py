"""Fixtures shared by every test: a fresh migrated Postgres database per session,
sessions on it, and settings pointing at it (never at a developer's `.env`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.config import Settings, load_settings
from neuronetz_gateway.db.engine import create_engine, session_factory
from tests.support.databases import REDIS_URL, create_migrated_database, drop_database


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database at the latest revision, dropped when the session ends."""
    url = create_migrated_database()
    yield url
    drop_database(url)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: explicit values win over the environment; `.env` is ignored."""
    values: dict[str, Any] = {
        "_env_file": None,
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "ollama_base_url": "http://127.0.0.1:9",
        "log_format": "console",
        "model_discovery_enabled": False,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with session_factory(engine)() as session:
        yield session
