"""Through PgBouncer in transaction pooling mode (docs/REFERENCE.md §13): the API, the audit
writer and the CLI work with `DATABASE_URL` pointing at PgBouncer; LISTEN, which needs a
session of its own, uses `DATABASE_LISTEN_URL` and keeps revocation within a second."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.db import migrate
from neuronetz_gateway.db.tables import AuditLog
from tests.doubles.ollama import OllamaDouble
from tests.support import pgbouncer
from tests.support.databases import drop_database, fresh_database_url
from tests.support.processes import GatewayProcess, base_environment
from tests.support.stack import start_gateway

pytestmark = pytest.mark.skipif(not pgbouncer.available(), reason="pgbouncer not installed")

KEYS = 12
MODEL_REQUEST = {"model": "llama3.1:8b", "prompt": "hi", "stream": False}


@pytest.fixture(scope="module")
def bouncer_url(database_url: str) -> Iterator[str]:
    with pgbouncer.running_pgbouncer(database_url) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(bouncer_url: str, database_url: str, double: OllamaDouble) -> Iterator[GatewayProcess]:
    """Every query through PgBouncer; only LISTEN goes straight to Postgres."""
    process = start_gateway(bouncer_url, double, {"DATABASE_LISTEN_URL": database_url})
    yield process
    process.stop()


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **base_environment(),
        "DATABASE_URL": database_url,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "64",
    }
    return subprocess.run(
        [sys.executable, "-m", "neuronetz_gateway", *args, "--json"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create_keys(bouncer_url: str, count: int) -> list[dict[str, str]]:
    """A tenant with limits and `count` keys, all made by the CLI through PgBouncer."""
    tenant = f"pgb-{time.monotonic_ns()}"
    assert cli(bouncer_url, "create-tenant", "--name", tenant).returncode == 0
    limits = cli(
        bouncer_url,
        *("set-limits", "--tenant", tenant, "--rpm", "1000", "--daily-tokens", "1000000"),
        "--allow-all-models",
    )
    assert limits.returncode == 0, limits.stderr
    keys = []
    for index in range(count):
        created = cli(bouncer_url, "create-key", "--tenant", tenant, "--name", f"k{index}")
        assert created.returncode == 0, created.stderr
        keys.append(json.loads(created.stdout))
    listed = cli(bouncer_url, "list-keys", "--tenant", tenant)
    assert len(json.loads(listed.stdout)) == count
    return keys


async def test_api_and_audit_through_pgbouncer(
    gateway: GatewayProcess, bouncer_url: str, session: AsyncSession
) -> None:
    keys = await asyncio.to_thread(create_keys, bouncer_url, KEYS)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        # Every key is new to the gateway: concurrent lookups, verifications and budget
        # rebuilds share PgBouncer's two server connections.
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/generate",
                    json=MODEL_REQUEST,
                    headers={"Authorization": f"Bearer {key['key']}"},
                )
                for key in keys
                for _ in range(3)
            )
        )
        assert [r.status_code for r in responses] == [200] * (3 * KEYS), [
            r.text for r in responses if r.status_code != 200
        ][:3]
        assert (await client.get("/readyz")).status_code == 200
    request_ids = {r.headers["x-request-id"] for r in responses}
    deadline = time.monotonic() + 15
    while True:
        written = set(
            (
                await session.scalars(
                    sa.select(AuditLog.request_id).where(AuditLog.request_id.in_(request_ids))
                )
            ).all()
        )
        if written == request_ids or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert written == request_ids
    assert "Error" not in gateway.logs(), gateway.logs()[-2000:]


async def test_revocation_through_pgbouncer_within_1s(
    gateway: GatewayProcess, bouncer_url: str
) -> None:
    (key,) = await asyncio.to_thread(create_keys, bouncer_url, 1)
    headers = {"Authorization": f"Bearer {key['key']}"}
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
        assert (await client.get("/api/tags", headers=headers)).status_code == 200
        revoked = await asyncio.to_thread(cli, bouncer_url, "revoke-key", "--prefix", key["prefix"])
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        while (await client.get("/api/tags", headers=headers)).status_code == 200:
            assert time.monotonic() - started < 1.0, "still accepted after 1 s"
    assert time.monotonic() - started < 1.0


def test_migrations_through_pgbouncer(bouncer_url: str) -> None:
    """The whole upgrade is one transaction under a transaction-scoped lock: it needs no
    session of its own."""
    direct = fresh_database_url("pgb-migrate")
    through = bouncer_url.rsplit("/", 1)[0] + "/" + direct.rsplit("/", 1)[1]
    try:
        asyncio.run(migrate.ensure_postgres_database(direct))
        result = cli(through, "migrate")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["revision"] == migrate.head_revision()
        assert cli(through, "check-schema").returncode == 0
    finally:
        drop_database(direct)
