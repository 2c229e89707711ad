"""Migration 0008_internal_error_outcome on Postgres and SQLite: the new outcome is
accepted after the upgrade, and a downgrade keeps the rows (as `upstream_error`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from neuronetz_gateway.db import migrate
from tests.support.databases import drop_database, fresh_database_url, run_sql

REVISION = "0008_internal_error_outcome"
BEFORE = "0007_cloud_models"


@pytest.fixture(params=["postgres", "sqlite"])
def scratch_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        return
    url = fresh_database_url("mig5")
    yield url
    drop_database(url)


def audit(url: str, request_id: str, outcome: str) -> None:
    run_sql(
        url,
        "INSERT INTO audit_log (request_id, ts, method, route, status_code, outcome, latency_ms)"
        " VALUES (:r, CURRENT_TIMESTAMP, 'POST', '/api/chat', 500, :o, 1.0)",
        r=request_id,
        o=outcome,
    )


def test_internal_error_is_an_outcome_after_the_upgrade_only(scratch_url: str) -> None:
    migrate.upgrade(scratch_url, BEFORE)
    with pytest.raises(DBAPIError):
        audit(scratch_url, "before", "internal_error")

    migrate.upgrade(scratch_url, REVISION)
    audit(scratch_url, "failed", "internal_error")
    audit(scratch_url, "served", "ok")

    migrate.downgrade(scratch_url, BEFORE)
    rows = run_sql(scratch_url, "SELECT request_id, outcome FROM audit_log ORDER BY request_id")
    assert rows == [("failed", "upstream_error"), ("served", "ok")]
    with pytest.raises(DBAPIError):
        audit(scratch_url, "after", "internal_error")

    migrate.upgrade(scratch_url, REVISION)
    audit(scratch_url, "again", "internal_error")
