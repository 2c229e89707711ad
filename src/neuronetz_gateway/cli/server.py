"""`serve`, `migrate` and `check-schema`."""

from __future__ import annotations

import time
from typing import Annotated

import asyncpg
import sqlalchemy.exc
import structlog
import typer
import uvicorn

from neuronetz_gateway.admin.demo import DEMO_TENANT, create_demo_key
from neuronetz_gateway.admin.keys import CreatedKey
from neuronetz_gateway.auth.keys import key_hasher
from neuronetz_gateway.cli.app import JsonFlag, app, database, emit, run, settings
from neuronetz_gateway.config import Settings, check_workers
from neuronetz_gateway.db import migrate as migrations
from neuronetz_gateway.observability.logging import configure_logging
from neuronetz_gateway.observability.multiprocess import metrics_directory
from neuronetz_gateway.workers import worker_count as workers_for

log = structlog.get_logger(__name__)

SCHEMA_POLL_SECONDS = 2.0


@app.command("migrate")
def migrate_command(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    as_json: JsonFlag = False,
) -> None:
    """Bring the database schema up to date (creates the database if missing)."""
    config = settings()
    applied = migrations.upgrade(config.effective_database_url, revision)
    current = migrations.current_revision(config.effective_database_url)
    done = f"applied {', '.join(applied)}" if applied else "nothing to apply"
    emit(
        as_json,
        {"revision": current, "applied": applied},
        f"database at revision {current} ({done})",
    )


@app.command("check-schema")
def check_schema_command(
    wait: Annotated[
        int,
        typer.Option(min=0, help="Seconds to wait for the schema to get there (a migration Job)."),
    ] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Exit 0 when the schema is at this release's head (or past it); never migrates."""
    config = settings()
    status = _await_schema(config.effective_database_url, wait)
    emit(
        as_json,
        {"revision": status.current, "head": status.head, "ready": status.ready},
        f"database at revision {status.current}, this release's head is {status.head}",
    )
    if not status.ready:
        raise typer.Exit(1)


def _await_schema(database_url: str, wait_seconds: int) -> migrations.SchemaStatus:
    """The schema's status, polled until it is ready or `wait_seconds` have passed; a
    database that cannot be reached yet counts as not ready."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            status = migrations.schema_status(database_url)
        except (OSError, TimeoutError, asyncpg.PostgresError, sqlalchemy.exc.DBAPIError) as error:
            if time.monotonic() >= deadline:
                # A database that does not exist yet is as unreachable as one that is down.
                raise ConnectionError("database unreachable") from error
            status = None
        if status is not None and (status.ready or time.monotonic() >= deadline):
            return status
        time.sleep(min(SCHEMA_POLL_SECONDS, max(0.0, deadline - time.monotonic())))


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="Overrides GATEWAY_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides GATEWAY_PORT.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Overrides GATEWAY_WORKERS.")] = None,
    skip_migrations: Annotated[
        bool,
        typer.Option(
            "--skip-migrations", help="Do not migrate first (migrations run as a separate job)."
        ),
    ] = False,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="Create tenant 'demo' (every model allowed) and print a new key."
        ),
    ] = False,
) -> None:
    """Run migrations, then serve the gateway."""
    config = settings()
    worker_count = workers or workers_for(config)
    check_workers(worker_count, config.redis_url)
    configure_logging(config.log_level, config.log_format)
    if not skip_migrations:
        _migrate_and_log(config.effective_database_url)
    if demo:
        _print_demo_key(config, host or config.gateway_host, port or config.gateway_port)
    # Before the app (and prometheus_client) is imported: workers inherit the directory.
    with metrics_directory(config, worker_count):
        uvicorn.run(
            "neuronetz_gateway.app:create_app_from_env",
            factory=True,
            host=host or config.gateway_host,
            port=port or config.gateway_port,
            workers=worker_count,
            loop="uvloop",
            # uvicorn's httptools protocol with header/body limits and timeouts and a cap
            # on connections; imported in each worker, after the metrics directory is set.
            http="neuronetz_gateway.server.protocol:GatewayHttpProtocol",
            lifespan="on",
            access_log=False,
            # Client addresses are taken from X-Forwarded-For only for TRUSTED_PROXY_IPS,
            # by the gateway itself; uvicorn's own rewriting would trust loopback blindly.
            proxy_headers=False,
            server_header=False,
            log_config=None,
            # SIGTERM: stop accepting, let requests in flight finish for this long, then
            # cancel them (settled and audited as cancelled) and flush the audit buffer.
            timeout_graceful_shutdown=config.shutdown_grace_seconds,
        )


def _migrate_and_log(database_url: str) -> None:
    applied = migrations.upgrade(database_url)
    if applied:
        log.info("schema_migrated", applied=applied)
    else:
        log.info("schema_current", revision=migrations.head_revision())


def _print_demo_key(config: Settings, host: str, port: int) -> None:
    async def work(config: Settings) -> CreatedKey:
        hasher = key_hasher(config)
        async with database(config) as session:
            return await create_demo_key(session, hasher)

    created = run(work)
    typer.echo(
        f"demo: tenant {DEMO_TENANT!r} may use every model; its new key (shown once):\n"
        f"{created.secret}\n"
        f"try: curl -s http://{host}:{port}/v1/models "
        f'-H "Authorization: Bearer {created.secret}"'
    )
