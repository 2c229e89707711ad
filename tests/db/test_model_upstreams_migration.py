"""Migration 0004_model_upstreams: existing models keep their server across the upgrade."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from neuronetz_gateway.db import migrate
from tests.support.databases import drop_database, fresh_database_url, run_sql

BEFORE = "0003_models_modified_at"


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = fresh_database_url("mig4")
    yield url
    drop_database(url)


def test_upgrade_carries_each_available_models_server_over_and_downgrade_drops_it(
    scratch_url: str,
) -> None:
    migrate.upgrade(scratch_url, BEFORE)
    run_sql(
        scratch_url,
        "INSERT INTO models (name, available, upstream) VALUES"
        " ('on-a:1b', true, 'http://a:11434'),"
        " ('anywhere:1b', true, NULL),"
        " ('gone:1b', false, 'http://a:11434')",
    )

    migrate.upgrade(scratch_url)

    assert run_sql(scratch_url, "SELECT model_name, upstream FROM model_upstreams") == [
        ("on-a:1b", "http://a:11434")
    ]

    migrate.downgrade(scratch_url, BEFORE)

    assert migrate.current_revision(scratch_url) == BEFORE
    assert run_sql(scratch_url, "SELECT to_regclass('model_upstreams') IS NULL") == [(True,)]
    assert run_sql(scratch_url, "SELECT name, upstream FROM models ORDER BY name") == [
        ("anywhere:1b", None),
        ("gone:1b", "http://a:11434"),
        ("on-a:1b", "http://a:11434"),
    ]
