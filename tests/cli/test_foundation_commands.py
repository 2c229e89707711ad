"""CLI (docs/REFERENCE.md §6): tenants and keys, --json, and one-line errors without tracebacks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import asyncpg
import pytest

from neuronetz_gateway.cli.main import run_cli
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db import migrate
from tests.support.processes import base_environment

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
ARGON2_CHEAP = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64"}


def cli_process(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in a child process (fresh environment, no .env)."""
    full_env = {**base_environment(), "DATABASE_URL": database_url, **ARGON2_CHEAP}
    return subprocess.run(
        [sys.executable, "-m", "neuronetz_gateway", *args],
        env=full_env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in this process (fast) with the same environment rules as a child."""
    patch = pytest.MonkeyPatch()
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        for name in [n for n in os.environ if n.upper() in SETTING_NAMES]:
            patch.delenv(name)
        patch.setenv("DATABASE_URL", database_url)
        for name, value in ARGON2_CHEAP.items():
            patch.setenv(name, value)
        patch.chdir("/")
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = run_cli(list(args))
    finally:
        patch.undo()
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def unique(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_tenant_and_key_lifecycle_in_json(database_url: str) -> None:
    name = unique("acme")
    created = cli(database_url, "create-tenant", "--name", name, "--json")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert tenant["name"] == name
    assert tenant["status"] == "active"

    key_result = cli(database_url, "create-key", "--tenant", name, "--name", "ci", "--json")
    assert key_result.returncode == 0, key_result.stderr
    key = json.loads(key_result.stdout)
    assert key["key"].startswith(key["prefix"])
    assert key["tenant"] == name

    listed = json.loads(cli(database_url, "list-keys", "--tenant", name, "--json").stdout)
    assert [k["prefix"] for k in listed] == [key["prefix"]]
    assert "key" not in listed[0]
    assert key["key"] not in json.dumps(listed)

    revoke = ("revoke-key", "--prefix", key["prefix"], "--json")
    revoked = json.loads(cli(database_url, *revoke).stdout)
    assert revoked["status"] == "revoked"
    assert revoked["changed"] is True
    again = json.loads(cli(database_url, *revoke).stdout)
    assert again["changed"] is False

    suspended = json.loads(cli(database_url, "suspend-tenant", "--name", name, "--json").stdout)
    assert suspended["status"] == "suspended"
    resumed = json.loads(cli(database_url, "resume-tenant", "--name", name, "--json").stdout)
    assert resumed["status"] == "active"


def test_create_key_prints_the_key_once_and_stores_only_its_hash(database_url: str) -> None:
    name = unique("hash")
    assert cli(database_url, "create-tenant", "--name", name).returncode == 0
    result = cli(database_url, "create-key", "--tenant", name, "--name", "k", "--expires-in", "90d")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.splitlines()[0]
    assert result.stdout.count(secret) == 1
    assert len(secret) == 49

    dump = _dump_every_text_column(database_url)
    assert secret not in dump
    assert secret[11:] not in dump  # not even the secret part without its prefix
    assert secret[:11] in dump  # the prefix is stored
    assert "$argon2id$" in dump


def _dump_every_text_column(database_url: str) -> str:
    import asyncio

    async def dump() -> str:
        connection = await asyncpg.connect(migrate.asyncpg_dsn(database_url))
        try:
            tables = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            parts: list[str] = []
            for table in tables:
                rows = await connection.fetch(f'SELECT * FROM "{table["tablename"]}"')
                parts.extend(str(dict(row)) for row in rows)
            return "\n".join(parts)
        finally:
            await connection.close()

    return asyncio.run(dump())


def test_human_output_of_create_key_warns_it_is_shown_once(database_url: str) -> None:
    name = unique("human")
    cli(database_url, "create-tenant", "--name", name)
    result = cli(database_url, "create-key", "--tenant", name, "--name", "laptop")
    assert "cannot be shown again" in result.stdout


def test_unknown_tenant(database_url: str) -> None:
    result = cli(database_url, "create-key", "--tenant", "no-such-tenant", "--name", "k")
    assert_one_line_error(result, "unknown tenant 'no-such-tenant'")


def test_duplicate_tenant_name(database_url: str) -> None:
    name = unique("dup")
    assert cli(database_url, "create-tenant", "--name", name).returncode == 0
    assert_one_line_error(cli(database_url, "create-tenant", "--name", name), "already exists")


@pytest.mark.parametrize("bad", ["A", "Upper", "-lead", "has space", "x" * 64, "ü-tf8"])
def test_bad_tenant_name(database_url: str, bad: str) -> None:
    assert_one_line_error(cli(database_url, "create-tenant", "--name", bad), "invalid tenant name")


def test_duplicate_active_key_name(database_url: str) -> None:
    name = unique("dupkey")
    cli(database_url, "create-tenant", "--name", name)
    assert cli(database_url, "create-key", "--tenant", name, "--name", "k").returncode == 0
    result = cli(database_url, "create-key", "--tenant", name, "--name", "k")
    assert_one_line_error(result, "already has an active key named 'k'")


def test_database_unreachable() -> None:
    result = cli_process(
        "postgresql+asyncpg://postgres@127.0.0.1:1/nothing", "list-keys", "--tenant", "x"
    )
    assert_one_line_error(result, "database unreachable")


def test_unmigrated_database_says_so() -> None:
    # The maintenance database exists but has none of our tables.
    result = cli(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", "list-keys", "--tenant", "x"
    )
    assert_one_line_error(result, "migrate")


def test_invalid_duration(database_url: str) -> None:
    name = unique("dur")
    cli(database_url, "create-tenant", "--name", name)
    result = cli(
        database_url, "create-key", "--tenant", name, "--name", "k", "--expires-in", "soon"
    )
    assert_one_line_error(result, "--expires-in")


def test_usage_errors_exit_2_with_one_line(database_url: str) -> None:
    result = cli_process(database_url, "create-tenant")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--name" in result.stderr


def test_unknown_key_prefix(database_url: str) -> None:
    assert_one_line_error(
        cli(database_url, "revoke-key", "--prefix", "nz_zzzzzzzz"), "unknown key 'nz_zzzzzzzz'"
    )
    assert_one_line_error(
        cli(database_url, "revoke-key", "--prefix", "garbage"), "invalid key prefix"
    )
