"""`set-limits` and `effective_limits` (docs/REFERENCE.md §3.2 tenant_limits / key_limits, §6)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.limits import effective_limits
from neuronetz_gateway.auth.principal import LimitValues
from neuronetz_gateway.db.tables import KeyLimits, TenantLimits
from tests.cli.conftest import Cli
from tests.support.factories import KeyFixture, make_key, make_tenant

UNSET = dict.fromkeys(
    ("rpm", "tpm", "max_concurrent", "daily_tokens", "monthly_tokens", "total_tokens")
)


async def tenant_row(db: AsyncSession, tenant_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await db.execute(sa.select(TenantLimits).where(TenantLimits.tenant_id == tenant_id))
    ).one()
    limits = row[0]
    return {c: getattr(limits, c) for c in (*UNSET, "allow_all_models")}


async def key_row(db: AsyncSession, key_id: uuid.UUID) -> dict[str, Any] | None:
    result = await db.execute(
        sa.select(KeyLimits)
        .where(KeyLimits.key_id == key_id)
        .execution_options(populate_existing=True)
    )
    limits = result.scalar_one_or_none()
    if limits is None:
        return None
    return {c: getattr(limits, c) for c in (*UNSET, "allow_all_models")}


@pytest.fixture
async def key(db: AsyncSession) -> KeyFixture:
    tenant = await make_tenant(db)
    return await make_key(db, tenant.name)


async def test_set_tenant_limits_changes_only_given_options(
    cli: Cli, db: AsyncSession, key: KeyFixture
) -> None:
    first = await cli(
        "set-limits", "--tenant", key.tenant_name, "--rpm", "60", "--daily-tokens", "0",
        "--allow-all-models",
    )  # fmt: skip
    second = await cli(
        "set-limits", "--tenant", key.tenant_name, "--rpm", "none", "--tpm", "1000", "--json"
    )

    assert first.exit_code == 0, first.stderr
    assert first.stdout == (
        f"tenant {key.tenant_name}\n"
        "  limits: rpm=60 tpm=unlimited max_concurrent=unlimited daily_tokens=0 "
        "monthly_tokens=unlimited total_tokens=unlimited\n"
        "  allow_all_models=true\n"
        "  metrics=off\n"
        "  weight=1\n"
    )
    assert second.exit_code == 0, second.stderr
    assert second.json()["tenant"]["limits"] == {**UNSET, "tpm": 1000, "daily_tokens": 0}
    assert second.json()["tenant"]["allow_all_models"] is True
    db.expire_all()
    assert await tenant_row(db, key.tenant_id) == {
        **UNSET,
        "tpm": 1000,
        "daily_tokens": 0,
        "allow_all_models": True,
    }


async def test_set_tenant_limits_creates_a_missing_row(
    cli: Cli, db: AsyncSession, key: KeyFixture
) -> None:
    await db.execute(sa.delete(TenantLimits).where(TenantLimits.tenant_id == key.tenant_id))
    await db.commit()

    result = await cli("set-limits", "--tenant", key.tenant_name, "--max-concurrent", "4")

    assert result.exit_code == 0, result.stderr
    assert await tenant_row(db, key.tenant_id) == {
        **UNSET,
        "max_concurrent": 4,
        "allow_all_models": False,
    }


async def test_set_key_limits_prints_own_and_effective_limits(
    cli: Cli, db: AsyncSession, key: KeyFixture
) -> None:
    await cli("set-limits", "--tenant", key.tenant_name, "--rpm", "60", "--tpm", "5000")
    assert await key_row(db, key.key_id) is None

    result = await cli(
        "set-limits", "--key", key.prefix, "--rpm", "10", "--total-tokens", "100000",
        "--no-allow-all-models", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["key"]["limits"] == {**UNSET, "rpm": 10, "total_tokens": 100_000}
    assert data["key"]["effective_limits"] == {
        **UNSET,
        "rpm": 10,
        "tpm": 5000,
        "total_tokens": 100_000,
    }
    assert data["key"]["allow_all_models"] is False
    assert data["tenant"]["limits"] == {**UNSET, "rpm": 60, "tpm": 5000}
    assert await key_row(db, key.key_id) == {
        **UNSET,
        "rpm": 10,
        "total_tokens": 100_000,
        "allow_all_models": False,
    }

    text = await cli("set-limits", "--key", key.prefix, "--inherit-models", "--rpm", "none")
    assert text.exit_code == 0, text.stderr
    assert text.stdout == (
        f"key {key.prefix} (tenant {key.tenant_name})\n"
        "  own:       rpm=inherit tpm=inherit max_concurrent=inherit daily_tokens=inherit "
        "monthly_tokens=inherit total_tokens=100000\n"
        "  effective: rpm=60 tpm=5000 max_concurrent=unlimited daily_tokens=unlimited "
        "monthly_tokens=unlimited total_tokens=100000\n"
        "  tenant:    rpm=60 tpm=5000 max_concurrent=unlimited daily_tokens=unlimited "
        "monthly_tokens=unlimited total_tokens=unlimited\n"
        "  allow_all_models=inherit (tenant: false)\n"
    )
    row = await key_row(db, key.key_id)
    assert row is not None
    assert row["allow_all_models"] is None
    assert row["rpm"] is None


async def test_effective_limits_inherit_per_field(db: AsyncSession, key: KeyFixture) -> None:
    db.add(KeyLimits(key_id=key.key_id, tpm=7, daily_tokens=0))
    await db.execute(
        sa.update(TenantLimits)
        .where(TenantLimits.tenant_id == key.tenant_id)
        .values(rpm=60, tpm=1000, monthly_tokens=10**9)
    )
    await db.commit()

    tenant, effective = await effective_limits(db, key.key_id)

    assert tenant == LimitValues(rpm=60, tpm=1000, monthly_tokens=10**9)
    assert effective == LimitValues(rpm=60, tpm=7, daily_tokens=0, monthly_tokens=10**9)


async def test_set_limits_without_options_prints_without_writing(
    cli: Cli, db: AsyncSession, key: KeyFixture
) -> None:
    result = await cli("set-limits", "--key", key.prefix, "--json")

    assert result.exit_code == 0
    assert result.json()["key"]["effective_limits"] == UNSET
    assert await key_row(db, key.key_id) is None


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--rpm", "-1"], 2, "Invalid value for '--rpm': '-1' is not a whole number"),
        (["--tpm", "lots"], 2, "Invalid value for '--tpm': 'lots' is not a whole number"),
        (["--max-concurrent", "4294967296"], 2, "is larger than 2147483647"),
        (["--inherit-models"], 1, "error: --inherit-models applies to keys only"),
    ],
)
async def test_set_limits_refuses_bad_values_in_one_line(
    cli: Cli, db: AsyncSession, key: KeyFixture, args: list[str], code: int, message: str
) -> None:
    result = await cli("set-limits", "--tenant", key.tenant_name, *args)

    assert result.exit_code == code
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr
    assert await tenant_row(db, key.tenant_id) == {**UNSET, "allow_all_models": False}


async def test_set_limits_needs_exactly_one_subject(cli: Cli, key: KeyFixture) -> None:
    neither = await cli("set-limits", "--rpm", "1")
    both = await cli("set-limits", "--tenant", key.tenant_name, "--key", key.prefix)
    unknown = await cli("set-limits", "--key", "nz_zzzzzzzz", "--rpm", "1")

    assert (neither.exit_code, both.exit_code) == (2, 2)
    assert "exactly one" in neither.stderr
    assert len(both.stderr.splitlines()) == 1
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: unknown key 'nz_zzzzzzzz'\n"


async def marked_tenants(db: AsyncSession) -> int:
    count = await db.scalar(
        sa.select(sa.func.count()).select_from(TenantLimits).where(TenantLimits.metrics)
    )
    return int(count or 0)


async def metrics_on(db: AsyncSession, tenant_id: uuid.UUID) -> bool:
    db.expire_all()
    row = await db.get_one(TenantLimits, tenant_id, populate_existing=True)
    return row.metrics


async def test_metrics_on_and_off_for_a_tenant(cli: Cli, db: AsyncSession, key: KeyFixture) -> None:
    on = await cli("set-limits", "--tenant", key.tenant_name, "--metrics", "on")
    assert on.exit_code == 0, on.stderr
    assert "\n  metrics=on\n" in on.stdout
    assert await metrics_on(db, key.tenant_id)

    off = await cli("set-limits", "--tenant", key.tenant_name, "--metrics", "off", "--json")
    assert off.exit_code == 0, off.stderr
    assert off.json()["tenant"]["metrics"] is False
    assert not await metrics_on(db, key.tenant_id)


async def test_metrics_is_for_tenants_only(cli: Cli, key: KeyFixture) -> None:
    result = await cli("set-limits", "--key", key.prefix, "--metrics", "on")
    assert result.exit_code == 2
    assert "applies to tenants only" in result.stderr


async def test_marking_stops_at_metrics_max_tenants(
    cli: Cli, db: AsyncSession, key: KeyFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = await make_tenant(db)
    other_id, other_name = other.id, other.name
    monkeypatch.setenv("METRICS_MAX_TENANTS", str(await marked_tenants(db) + 1))
    first = await cli("set-limits", "--tenant", key.tenant_name, "--metrics", "on")
    again = await cli("set-limits", "--tenant", key.tenant_name, "--metrics", "on")
    refused = await cli("set-limits", "--tenant", other_name, "--metrics", "on", "--rpm", "5")

    assert (first.exit_code, again.exit_code) == (0, 0)  # marking a marked one is no new one
    assert refused.exit_code == 1
    assert len(refused.stderr.splitlines()) == 1
    assert "have metrics on already (METRICS_MAX_TENANTS=" in refused.stderr
    assert not await metrics_on(db, other_id)
    assert (await tenant_row(db, other_id))["rpm"] is None  # nothing of the command applied
    await cli("set-limits", "--tenant", key.tenant_name, "--metrics", "off")


async def test_weight_of_a_tenant_is_set_and_shown(
    cli: Cli, db: AsyncSession, key: KeyFixture
) -> None:
    result = await cli("set-limits", "--tenant", key.tenant_name, "--weight", "3", "--json")

    assert result.exit_code == 0, result.stderr
    assert result.json()["tenant"]["weight"] == 3
    row = await db.get_one(TenantLimits, key.tenant_id, populate_existing=True)
    assert row.weight == 3
    shown = await cli("set-limits", "--tenant", key.tenant_name)
    assert shown.stdout.endswith("  weight=3\n")


@pytest.mark.parametrize("value", ["0", "101", "-1", "2.5", "three", "none"])
async def test_weight_outside_1_to_100_is_a_usage_error(
    cli: Cli, db: AsyncSession, key: KeyFixture, value: str
) -> None:
    result = await cli("set-limits", "--tenant", key.tenant_name, "--weight", value)

    assert result.exit_code == 2
    assert "from 1 to 100" in result.stderr
    row = await db.get_one(TenantLimits, key.tenant_id, populate_existing=True)
    assert row.weight == 1


async def test_weight_is_for_tenants_only(cli: Cli, key: KeyFixture) -> None:
    result = await cli("set-limits", "--key", key.prefix, "--weight", "2")

    assert result.exit_code == 2
    assert "applies to tenants only" in result.stderr
