"""Running the CLI in-process with a clean environment (no developer `.env`)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess

import pytest

from neuronetz_gateway.cli.main import run_cli
from neuronetz_gateway.config import Settings

SETTING_NAMES = {name.upper() for name in Settings.model_fields}
ARGON2_CHEAP = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "64"}


def cli(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `neuronetz-gateway args...` against `database_url`; capture output and exit code."""
    return run_cli_in_process(*args, env={"DATABASE_URL": database_url, **(env or {})})


def run_cli_in_process(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `neuronetz-gateway args...` with only `env` (and cheap Argon2) configured."""
    patch = pytest.MonkeyPatch()
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        for name in [n for n in os.environ if n.upper() in SETTING_NAMES | {"XDG_DATA_HOME"}]:
            patch.delenv(name)
        for name, value in {**ARGON2_CHEAP, **(env or {})}.items():
            patch.setenv(name, value)
        patch.chdir("/")
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = run_cli(list(args))
    finally:
        patch.undo()
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())
