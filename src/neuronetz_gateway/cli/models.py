"""`list-models`, `discover-models`, `register-model`, `unregister-model`."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Annotated

import structlog
import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.admin import models
from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.catalog.discovery import SyncResult, upstream_label
from neuronetz_gateway.catalog.models import is_cloud_model
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, run
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.engine import create_engine
from neuronetz_gateway.db.tables import Model

ModelOption = Annotated[str, typer.Option("--model", help="Model name, e.g. llama3.1:8b.")]


def model_json(model: Model) -> dict[str, object]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "name": model.name,
        "available": model.available,
        "digest": model.digest,
        "size_bytes": model.size_bytes,
        "details": model.details,
        "modified_at": model.modified_at,
        "cloud": is_cloud_model(model.name),
        "cloud_approved": model.cloud_approved,
        "upstream": upstream_label(model.upstream) if model.upstream else None,
        "first_seen_at": iso(model.first_seen_at),
        "last_seen_at": iso(model.last_seen_at),
    }


def _size(size_bytes: int | None) -> str:
    return f"{size_bytes / 1e9:.1f} GB" if size_bytes is not None else "-"


def _model_line(model: Model, show_availability: bool) -> str:
    state = (
        "" if not show_availability else ("available    " if model.available else "unavailable  ")
    )
    upstream = upstream_label(model.upstream) if model.upstream else "any upstream"
    return f"{state}{model.name:<40} {_size(model.size_bytes):>9}  {upstream}"


@contextmanager
def _logs_on_stderr() -> Iterator[None]:
    """Discovery logs for the gateway's log stream; on the command line its events would
    land in stdout (and break --json). The command reports failures itself, so only
    errors are logged, on stderr."""
    saved = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


@asynccontextmanager
async def _engine(config: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(config.effective_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@app.command("list-models")
def list_models(
    include_all: Annotated[
        bool, typer.Option("--all", help="Include models that are no longer available.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List the model catalog (available models; --all adds unavailable ones)."""

    async def work(config: Settings) -> list[Model]:
        async with database(config) as session:
            return await models.list_models(session, include_unavailable=include_all)

    rows = run(work)
    text = "\n".join(_model_line(m, include_all) for m in rows) or "the catalog is empty"
    emit(as_json, [model_json(m) for m in rows], text)


def _summary(result: SyncResult, upstreams: int) -> str:
    lines = [
        f"synced {upstreams - len(result.failed_upstreams)} of {upstreams} upstream(s): "
        f"{len(result.added)} added, {len(result.reappeared)} reappeared, "
        f"{len(result.updated)} updated, {len(result.vanished)} vanished, "
        f"{result.unchanged} unchanged"
    ]
    for label, names in (
        ("added", result.added),
        ("reappeared", result.reappeared),
        ("updated", result.updated),
        ("vanished", result.vanished),
        ("withheld (cloud, see register-model --cloud)", result.withheld),
    ):
        if names:
            lines.append(f"  {label}: {', '.join(names)}")
    return "\n".join(lines)


@app.command("discover-models")
def discover_models(as_json: JsonFlag = False) -> None:
    """Poll every upstream's /api/tags now and update the catalog.

    Runs whatever MODEL_DISCOVERY_ENABLED says. An unreachable upstream is an error
    (exit 1); its models are left as they were, the reachable ones are still synced.
    """

    async def work(config: Settings) -> tuple[SyncResult, int]:
        async with _engine(config) as engine:
            return await models.discover_models(engine, config), len(config.upstream_urls)

    with _logs_on_stderr():
        result, upstreams = run(work)
    failed = [
        {"upstream": upstream_label(url), "reason": reason}
        for url, reason in zip(result.failed_upstreams, result.failure_reasons, strict=True)
    ]
    data = {**result.as_dict(), "failed_upstreams": failed}
    del data["failure_reasons"]
    emit(as_json, data, _summary(result, upstreams))
    if failed:
        named = ", ".join(f"{f['upstream']} ({f['reason']})" for f in failed)
        raise AdminError(f"upstream unreachable: {named}; its models were left unchanged")


def _discovery_note(config: Settings, text: str) -> None:
    if config.model_discovery_enabled:
        typer.echo(f"warning: MODEL_DISCOVERY_ENABLED is on: {text}", err=True)


@app.command("register-model")
def register_model(
    model: ModelOption,
    upstream: Annotated[
        str | None,
        typer.Option("--upstream", help="Pin to one configured Ollama URL (default: any)."),
    ] = None,
    cloud: Annotated[
        bool,
        typer.Option(
            "--cloud",
            help="Allow a cloud model (tag ending in cloud): Ollama runs it on ollama.com "
            "under the server's account.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Add a model to the catalog by hand (for MODEL_DISCOVERY_ENABLED=false), or allow
    a cloud model discovery found (--cloud).

    A name without a tag is stored with ':latest', as Ollama reads it.
    """

    async def work(config: Settings) -> models.ModelChange:
        async with database(config) as session:
            change = await models.register_model(
                session, config, model, upstream=upstream, cloud=cloud
            )
        _discovery_note(
            config, "the next discovery run marks it unavailable unless an upstream reports it"
        )
        return change

    change = run(work)
    name = change.model.name
    text = f"registered model {name}" if change.changed else f"model {name} is already available"
    emit(as_json, {**model_json(change.model), "changed": change.changed}, text)


@app.command("unregister-model")
def unregister_model(model: ModelOption, as_json: JsonFlag = False) -> None:
    """Mark a model unavailable (requests for it get 404); grants are kept."""

    async def work(config: Settings) -> models.ModelChange:
        async with database(config) as session:
            change = await models.unregister_model(session, model)
        if not is_cloud_model(change.model.name):  # a cloud model stays withheld
            _discovery_note(
                config, "the next discovery run brings it back if an upstream reports it"
            )
        return change

    change = run(work)
    name = change.model.name
    text = f"model {name} is now unavailable" if change.changed else f"model {name} was unavailable"
    emit(as_json, {**model_json(change.model), "changed": change.changed}, text)
