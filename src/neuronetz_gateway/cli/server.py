"""`serve` and `migrate`."""

from __future__ import annotations

from typing import Annotated

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


@app.command("migrate")
def migrate_command(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    as_json: JsonFlag = False,
) -> None:
    """Bring the database schema up to date (creates the database if missing)."""
    config = settings()
    migrations.upgrade(config.effective_database_url, revision)
    current = migrations.current_revision(config.effective_database_url)
    emit(as_json, {"revision": current}, f"database at revision {current}")


@app.command("serve")
def serve_command(
    host: Annotated[str | None, typer.Option(help="Overrides GATEWAY_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides GATEWAY_PORT.")] = None,
    workers: Annotated[int | None, typer.Option(help="Overrides GATEWAY_WORKERS.")] = None,
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
    worker_count = workers or config.gateway_workers
    check_workers(worker_count, config.redis_url)
    configure_logging(config.log_level, config.log_format)
    if not skip_migrations:
        migrations.upgrade(config.effective_database_url)
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
