"""`set-prompt-logging`: prompt-log opt-in for existing keys (docs/REFERENCE.md §4.10)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from neuronetz_gateway.db import migrate
from tests.audit.cli import cli


def create_key(database_url: str) -> str:
    tenant = f"pl-{uuid.uuid4().hex[:8]}"
    assert cli(database_url, "create-tenant", "--name", tenant).returncode == 0
    created = cli(database_url, "create-key", "--tenant", tenant, "--name", "k", "--json")
    assert created.returncode == 0, created.stderr
    return str(json.loads(created.stdout)["prefix"])


def stored(database_url: str, prefix: str) -> tuple[bool, int | None]:
    async def fetch() -> tuple[bool, int | None]:
        connection = await asyncpg.connect(migrate.asyncpg_dsn(database_url))
        try:
            row = await connection.fetchrow(
                "SELECT prompt_logging, prompt_log_ttl_hours FROM api_keys WHERE prefix = $1",
                prefix,
            )
            assert row is not None
            return row["prompt_logging"], row["prompt_log_ttl_hours"]
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_turning_prompt_logging_on_and_off(database_url: str) -> None:
    prefix = create_key(database_url)
    assert stored(database_url, prefix) == (False, None)

    on = cli(
        database_url, "set-prompt-logging", "--prefix", prefix, "--on", "--ttl", "2d", "--json"
    )
    assert on.returncode == 0, on.stderr
    data = json.loads(on.stdout)
    assert (data["prefix"], data["prompt_logging"], data["prompt_log_ttl_hours"]) == (
        prefix,
        True,
        48,
    )
    assert stored(database_url, prefix) == (True, 48)

    off = cli(database_url, "set-prompt-logging", "--prefix", prefix, "--off")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == f"prompt logging off for key {prefix}"
    # The TTL is kept for the next time it is turned on.
    assert stored(database_url, prefix) == (False, 48)

    again = cli(database_url, "set-prompt-logging", "--prefix", prefix, "--on")
    assert again.stdout.strip() == f"prompt logging on for key {prefix}; logs kept 48h"


def test_without_a_ttl_the_default_applies(database_url: str) -> None:
    prefix = create_key(database_url)
    env = {"PROMPT_LOG_DEFAULT_TTL_HOURS": "12"}
    result = cli(database_url, "set-prompt-logging", "--prefix", prefix, "--on", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"prompt logging on for key {prefix}; logs kept 12h, the default"
    )
    assert stored(database_url, prefix) == (True, None)


def test_refusals_are_one_line_errors(database_url: str) -> None:
    prefix = create_key(database_url)
    cases = [
        (("--prefix", "nz_unknown1", "--on"), 1, "unknown key"),
        (("--prefix", prefix, "--off", "--ttl", "1h"), 1, "only when turning prompt logging on"),
        (("--prefix", prefix, "--on", "--ttl", "soon"), 1, "invalid --ttl"),
        (("--prefix", prefix), 2, "--on"),
    ]
    for args, code, fragment in cases:
        result = cli(database_url, "set-prompt-logging", *args)
        assert result.returncode == code, (args, result)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ")
        assert fragment in lines[0]
    assert stored(database_url, prefix) == (False, None)
