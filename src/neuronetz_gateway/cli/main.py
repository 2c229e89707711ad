"""Entry point `neuronetz-gateway`: runs the Typer app and turns every error into one line.

Exit codes: 0 success, 1 error, 2 usage error. No traceback ever reaches the terminal;
errors name what went wrong and, for configuration, the variable.
"""

from __future__ import annotations

import sys

import sqlalchemy.exc
import typer

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.cli import (  # noqa: F401 - registers commands
    grants,
    keys,
    limits,
    models,
    prompt_logging,
    purge,
    server,
    tenants,
    usage,
)
from neuronetz_gateway.cli.app import app
from neuronetz_gateway.config import ConfigError


def _fail(message: str, code: int = 1) -> int:
    typer.echo(f"error: {message}", err=True)
    return code


def _database_message(error: BaseException) -> str:
    text = str(getattr(error, "orig", error))
    if ("does not exist" in text and ("relation" in text or "type" in text)) or (
        "no such table" in text  # SQLite
    ):
        return "database schema is missing; run `neuronetz-gateway migrate`"
    if "database is locked" in text:
        return "database is busy (another process holds its write lock); try again"
    return "database unreachable (check DATABASE_URL, or DATA_DIR without it)"


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv`; return the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="neuronetz-gateway", standalone_mode=False)
    except typer.TyperException as error:
        # Usage errors (exit code 2) and other framework-level refusals.
        return _fail(f"{error.format_message()} (see --help)", error.exit_code)
    except typer.Abort:
        return _fail("aborted")
    except (AdminError, ConfigError) as error:
        return _fail(str(error).removeprefix("error: "))
    except (OSError, TimeoutError, sqlalchemy.exc.DBAPIError) as error:
        return _fail(_database_message(error))
    except Exception as error:  # noqa: BLE001 - the CLI promises no tracebacks
        return _fail(f"unexpected {type(error).__name__}; see the gateway logs")
    return result if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run_cli())
