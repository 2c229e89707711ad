"""`set-prompt-logging`."""

from __future__ import annotations

from typing import Annotated

import typer

from neuronetz_gateway.admin.prompt_logging import set_prompt_logging
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, parse_duration, run
from neuronetz_gateway.cli.keys import PrefixOption, key_json
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.tables import ApiKey


@app.command("set-prompt-logging")
def set_prompt_logging_command(
    prefix: PrefixOption,
    enabled: Annotated[
        bool, typer.Option("--on/--off", help="Log this key's prompts and responses, or stop.")
    ],
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="How long its prompt logs live, e.g. 24h, 7d.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Turn prompt logging of an existing key on or off."""
    lifetime = parse_duration(ttl, "--ttl") if ttl else None
    # Whole hours, as `create-key --prompt-log-ttl` stores them.
    ttl_hours = max(1, round(lifetime.total_seconds() / 3600)) if lifetime else None

    async def work(config: Settings) -> tuple[ApiKey, int]:
        async with database(config) as session:
            key = await set_prompt_logging(session, prefix, enabled=enabled, ttl_hours=ttl_hours)
        return key, config.prompt_log_default_ttl_hours

    key, default_hours = run(work)
    if key.prompt_logging:
        hours = key.prompt_log_ttl_hours or default_hours
        origin = "" if key.prompt_log_ttl_hours else ", the default"
        text = f"prompt logging on for key {key.prefix}; logs kept {hours}h{origin}"
    else:
        text = f"prompt logging off for key {key.prefix}"
    emit(as_json, key_json(key), text)
