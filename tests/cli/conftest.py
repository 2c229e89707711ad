"""CLI tests: commands run in-process through `run_cli`, on their own database (model
discovery would otherwise mark other modules' models unavailable)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.cli.main import run_cli
from neuronetz_gateway.db.engine import create_engine, session_factory
from neuronetz_gateway.db.tables import Model
from tests.support.databases import REDIS_URL, create_migrated_database, drop_database
from tests.support.tags_server import UNREACHABLE_URL, TagsServer, running_tags_server


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)


Cli = Callable[..., Awaitable[CliResult]]


@pytest.fixture(scope="session")
def cli_database_url() -> Iterator[str]:
    url = create_migrated_database("cli")
    yield url
    drop_database(url)


@pytest.fixture
async def cli_engine(cli_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the CLI database, whose `models` table starts empty."""
    engine = create_engine(cli_database_url)
    async with engine.begin() as connection:
        await connection.execute(sa.delete(Model))
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(cli_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with session_factory(cli_engine)() as session:
        yield session


@pytest.fixture
def tags_server() -> Iterator[TagsServer]:
    with running_tags_server() as server:
        yield server


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, cli_database_url: str, tmp_path: Any) -> None:
    """The environment an operator's shell would have (no `.env` in the working dir)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", cli_database_url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("OLLAMA_BASE_URL", UNREACHABLE_URL)
    monkeypatch.delenv("OLLAMA_BASE_URLS", raising=False)
    monkeypatch.setenv("MODEL_DISCOVERY_ENABLED", "false")
    monkeypatch.setenv("MODEL_DISCOVERY_TIMEOUT_SECONDS", "2")


@pytest.fixture
def cli(cli_env: None, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `neuronetz-gateway ARGS...` in a worker thread (it calls asyncio.run)."""

    async def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        code = await asyncio.to_thread(run_cli, list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
