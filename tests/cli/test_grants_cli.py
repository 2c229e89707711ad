"""`grant-model`, `revoke-model`, `list-grants`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from neuronetz_gateway.db.tables import Model, ModelGrant
from tests.cli.conftest import Cli
from tests.support.factories import KeyFixture, make_key, make_tenant


async def add_models(engine: AsyncEngine, *names: str, available: bool = True) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        for name in names:
            await connection.execute(
                sa.insert(Model).values(name=name, available=available, first_seen_at=now)
            )


async def grants_of(db: AsyncSession, tenant_id: uuid.UUID) -> set[tuple[str | None, str]]:
    rows = await db.execute(
        sa.select(ModelGrant.key_id, ModelGrant.model_name).where(ModelGrant.tenant_id == tenant_id)
    )
    return {(str(key_id) if key_id else None, model) for key_id, model in rows}


@pytest.fixture
async def key(db: AsyncSession) -> KeyFixture:
    tenant = await make_tenant(db)
    return await make_key(db, tenant.name)


async def test_grant_model_to_a_tenant(
    cli: Cli, db: AsyncSession, cli_engine: AsyncEngine, key: KeyFixture
) -> None:
    await add_models(cli_engine, "llama3:latest")

    granted = await cli("grant-model", "--tenant", key.tenant_name, "--model", "llama3")
    again = await cli("grant-model", "--tenant", key.tenant_name, "--model", "llama3", "--json")

    assert granted.exit_code == 0
    assert granted.stdout == f"granted model llama3:latest to tenant {key.tenant_name}\n"
    assert granted.stderr == ""
    assert again.exit_code == 0
    assert again.json() == {
        "tenant": key.tenant_name,
        "key": None,
        "model": "llama3:latest",
        "changed": False,
        "warnings": [],
    }
    assert await grants_of(db, key.tenant_id) == {(None, "llama3:latest")}


async def test_grant_of_a_model_outside_the_catalog_needs_force(
    cli: Cli, db: AsyncSession, key: KeyFixture
) -> None:
    refused = await cli("grant-model", "--tenant", key.tenant_name, "--model", "typo:1b")
    forced = await cli("grant-model", "--tenant", key.tenant_name, "--model", "future", "--force")

    assert refused.exit_code == 1
    assert refused.stderr == (
        "error: model 'typo:1b' is not in the catalog (see list-models --all); "
        "pass --force to grant it anyway\n"
    )
    assert forced.exit_code == 0
    assert await grants_of(db, key.tenant_id) == {(None, "future:latest")}


async def test_grant_of_an_unavailable_model_warns(
    cli: Cli, cli_engine: AsyncEngine, db: AsyncSession, key: KeyFixture
) -> None:
    await add_models(cli_engine, "old:1b", available=False)

    result = await cli("grant-model", "--tenant", key.tenant_name, "--model", "old:1b")

    assert result.exit_code == 0
    assert result.stderr == (
        "warning: model old:1b is currently unavailable; the grant applies once it is back\n"
    )
    assert await grants_of(db, key.tenant_id) == {(None, "old:1b")}


async def test_key_level_grants_warn_about_key_within_tenant_and_inheritance(
    cli: Cli, cli_engine: AsyncEngine, db: AsyncSession, key: KeyFixture
) -> None:
    await add_models(cli_engine, "a:1b", "b:1b")
    await cli("grant-model", "--tenant", key.tenant_name, "--model", "a:1b")

    inside = await cli(
        "grant-model", "--tenant", key.tenant_name, "--key", key.prefix, "--model", "a:1b"
    )
    outside = await cli(
        "grant-model", "--tenant", key.tenant_name, "--key", key.prefix, "--model", "b:1b"
    )

    assert inside.exit_code == 0
    assert inside.stderr == (
        f"warning: key {key.prefix} no longer inherits the tenant's models: "
        "it may now use only its key-level grants\n"
    )
    assert outside.exit_code == 0
    assert outside.stderr == (
        f"warning: tenant {key.tenant_name} may not use model b:1b: this key-level grant has "
        "no effect until it may (a key never exceeds its tenant)\n"
    )
    assert await grants_of(db, key.tenant_id) == {
        (None, "a:1b"),
        (str(key.key_id), "a:1b"),
        (str(key.key_id), "b:1b"),
    }

    listed = await cli("list-grants", "--tenant", key.tenant_name, "--json")
    assert listed.json() == [
        {"model": "a:1b", "key": None},
        {"model": "a:1b", "key": key.prefix},
        {"model": "b:1b", "key": key.prefix},
    ]

    await cli("revoke-model", "--tenant", key.tenant_name, "--key", key.prefix, "--model", "a:1b")
    last = await cli(
        "revoke-model", "--tenant", key.tenant_name, "--key", key.prefix, "--model", "b:1b"
    )
    assert last.exit_code == 0
    assert last.stdout == f"revoked model b:1b from key {key.prefix} of tenant {key.tenant_name}\n"
    assert last.stderr == (
        f"warning: key {key.prefix} has no key-level grants left: "
        "it inherits all of the tenant's models again\n"
    )
    assert await grants_of(db, key.tenant_id) == {(None, "a:1b")}


async def test_revoke_model_matches_the_name_without_tag_and_is_idempotent(
    cli: Cli, cli_engine: AsyncEngine, db: AsyncSession, key: KeyFixture
) -> None:
    await add_models(cli_engine, "llama3:latest")
    await cli("grant-model", "--tenant", key.tenant_name, "--model", "llama3:latest")

    revoked = await cli("revoke-model", "--tenant", key.tenant_name, "--model", "llama3")
    again = await cli("revoke-model", "--tenant", key.tenant_name, "--model", "llama3", "--json")

    assert revoked.stdout == f"revoked model llama3:latest from tenant {key.tenant_name}\n"
    assert again.exit_code == 0
    assert again.json()["changed"] is False
    assert await grants_of(db, key.tenant_id) == set()


async def test_a_key_of_another_tenant_is_refused(
    cli: Cli, cli_engine: AsyncEngine, db: AsyncSession, key: KeyFixture
) -> None:
    await add_models(cli_engine, "a:1b")
    other = await make_tenant(db)

    result = await cli(
        "grant-model", "--tenant", other.name, "--key", key.prefix, "--model", "a:1b"
    )

    assert result.exit_code == 1
    assert result.stderr == f"error: key {key.prefix} does not belong to tenant '{other.name}'\n"
    assert await grants_of(db, other.id) == set()


async def test_unknown_tenant_and_missing_options(cli: Cli) -> None:
    unknown = await cli("grant-model", "--tenant", "nobody-here", "--model", "a:1b")
    missing = await cli("grant-model", "--tenant", "nobody-here")

    assert unknown.exit_code == 1
    assert unknown.stderr == "error: unknown tenant 'nobody-here'\n"
    assert missing.exit_code == 2
    assert len(missing.stderr.splitlines()) == 1
    assert "--model" in missing.stderr
