"""The Typer application and what every command shares: settings, sessions, output."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import orjson
import typer
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.config import Settings, load_settings
from neuronetz_gateway.db.engine import create_engine, session_factory

app = typer.Typer(
    name="neuronetz-gateway",
    help="Secure multi-tenant API gateway in front of Ollama.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str, option: str) -> timedelta:
    """`90d`, `24h`, `30m`, `2w`, `45s` as a timedelta; AdminError naming `option` else."""
    match = _DURATION.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise AdminError(f"invalid {option} {value[:40]!r}: use a number and s, m, h, d or w")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def settings() -> Settings:
    return load_settings()


def run[T](work: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Run an async command body with the settings from the environment."""
    return asyncio.run(work(settings()))


@asynccontextmanager
async def database(config: Settings) -> AsyncIterator[AsyncSession]:
    """One session on a short-lived engine, disposed of when the command ends."""
    engine = create_engine(config.effective_database_url)
    try:
        async with session_factory(engine)() as session:
            yield session
    finally:
        await engine.dispose()


def emit(as_json: bool, data: Any, text: str) -> None:
    """Print `data` as JSON when asked, else the human `text`."""
    if as_json:
        typer.echo(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(text)
