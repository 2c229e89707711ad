"""Migration 0009_fair_share: tenants get weight 1, audit rows a queue_ms; downgrade drops both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from neuronetz_gateway.db import migrate
from tests.support.databases import drop_database, fresh_database_url, run_sql

BEFORE = "0008_internal_error_outcome"
AFTER = "0009_fair_share"
TENANT = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = fresh_database_url("mig9")
    yield url
    drop_database(url)


def _columns(url: str, table: str) -> set[str]:
    rows = run_sql(
        url, "SELECT column_name FROM information_schema.columns WHERE table_name = :t", t=table
    )
    return {str(name) for (name,) in rows}


def test_existing_tenants_get_weight_1_and_downgrade_drops_the_columns(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, BEFORE)
    run_sql(
        scratch_url,
        f"INSERT INTO tenants (id, name, status) VALUES ('{TENANT}', 'old', 'active')",
    )
    run_sql(scratch_url, f"INSERT INTO tenant_limits (tenant_id) VALUES ('{TENANT}')")

    migrate.upgrade(scratch_url)

    assert migrate.current_revision(scratch_url) == AFTER
    assert run_sql(scratch_url, "SELECT weight FROM tenant_limits") == [(1,)]
    assert "queue_ms" in _columns(scratch_url, "audit_log")

    migrate.downgrade(scratch_url, BEFORE)

    assert "weight" not in _columns(scratch_url, "tenant_limits")
    assert "queue_ms" not in _columns(scratch_url, "audit_log")
    assert run_sql(scratch_url, "SELECT name FROM tenants") == [("old",)]
    migrate.upgrade(scratch_url)
    assert run_sql(scratch_url, "SELECT weight FROM tenant_limits") == [(1,)]
