"""End-to-end fixtures: one Ollama double and one gateway process per test module.

The gateway runs on Postgres + Redis by default. A module that sets
`pytestmark = BOTH_BACKENDS` runs every test twice: against that gateway and against a
standalone one (SQLite, in-process limiter), with the same assertions. The `engine`
and `session` fixtures then reach whichever database the module's gateway uses.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.engine import create_engine
from neuronetz_gateway.db.tables import AuditLog, TenantLimits
from tests.doubles.ollama import OllamaDouble
from tests.support.factories import KeyFixture, make_key, make_tenant
from tests.support.processes import GatewayProcess
from tests.support.stack import sqlite_url, start_gateway, start_standalone_gateway

POSTGRES_REDIS, STANDALONE = "postgres+redis", "standalone"
BOTH_BACKENDS = pytest.mark.parametrize(
    "backend", [POSTGRES_REDIS, STANDALONE], indirect=True, scope="module"
)


@dataclass(frozen=True)
class Backend:
    """Where a module's gateway keeps its state; `database_url` is how tests reach it."""

    name: str
    database_url: str


@pytest.fixture(scope="module")
def backend(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    name = getattr(request, "param", POSTGRES_REDIS)
    if name == STANDALONE:
        url = sqlite_url(tmp_path_factory.mktemp("standalone-data"))
        migrate.upgrade(url)  # as `serve` would: tests may write before the gateway runs
        return Backend(name, url)
    return Backend(name, database_url)


@pytest.fixture(scope="module")
def double() -> Iterator[OllamaDouble]:
    with OllamaDouble() as running:
        yield running


@pytest.fixture(scope="module")
def gateway(backend: Backend, double: OllamaDouble) -> Iterator[GatewayProcess]:
    if backend.name == STANDALONE:
        data_dir = backend.database_url.removeprefix("sqlite+aiosqlite:///")
        process = start_standalone_gateway(Path(data_dir).parent, double)
    else:
        process = start_gateway(backend.database_url, double)
    yield process
    process.stop()


@pytest.fixture
async def engine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    """The database of the module's gateway."""
    engine = create_engine(backend.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
def _fresh_double(double: OllamaDouble) -> None:
    """Each test starts with a well-behaved double and an empty request record."""
    double.clear()
    double.completion_tokens = 5
    double.chunk_delay = 0.0
    double.first_byte_delay = 0.0
    double.fail_with = None
    double.mid_stream_error_after = None
    double.disconnect_after = None
    double.hang = False


@dataclass(frozen=True)
class Caller:
    """A key of a tenant that may use every model, and an httpx client for it."""

    key: KeyFixture
    client: httpx.AsyncClient

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key.secret}"}


async def allow_all_models(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    await session.execute(
        sa.update(TenantLimits)
        .where(TenantLimits.tenant_id == tenant_id)
        .values(allow_all_models=True)
    )
    await session.commit()


async def limited_key(
    session: AsyncSession,
    *,
    tenant: dict[str, int] | None = None,
    key: dict[str, int] | None = None,
) -> KeyFixture:
    """A key whose tenant may use every model, with the given tenant and key limits."""
    row = await make_tenant(session)
    await allow_all_models(session, row.id)
    if tenant:
        sets = ", ".join(f"{name} = :{name}" for name in tenant)
        await session.execute(
            sa.text(f"UPDATE tenant_limits SET {sets} WHERE tenant_id = :t"),
            {**tenant, "t": row.id},
        )
    created = await make_key(session, row.name)
    if key:
        names = ", ".join(key)
        values = ", ".join(f":{name}" for name in key)
        await session.execute(
            sa.text(f"INSERT INTO key_limits (key_id, {names}) VALUES (:k, {values})"),
            {**key, "k": created.key_id},
        )
    await session.commit()
    return created


@pytest.fixture
async def caller(session: AsyncSession, gateway: GatewayProcess) -> AsyncIterator[Caller]:
    tenant = await make_tenant(session)
    await allow_all_models(session, tenant.id)
    key = await make_key(session, tenant.name)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield Caller(key=key, client=client)


@pytest.fixture
def caller_secret(caller: Caller) -> str:
    """The caller's key, for synchronous raw-socket tests."""
    return caller.key.secret


@pytest.fixture
async def client(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        yield client


async def audit_rows(
    engine: AsyncEngine, request_id: str, *, expected: int = 1, timeout: float = 5.0
) -> list[AuditLog]:
    """The audit rows of `request_id` (the gateway's or the client's X-Request-ID),
    waiting (bounded) for the batched writer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with AsyncSession(engine) as session:
            rows = list(
                await session.scalars(
                    sa.select(AuditLog).where(
                        sa.or_(
                            AuditLog.request_id == request_id,
                            AuditLog.client_request_id == request_id,
                        )
                    )
                )
            )
        if len(rows) >= expected or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.05)  # the writer flushes every 50 ms in tests: poll its result
