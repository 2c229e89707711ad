"""Programmatic Alembic: upgrade/downgrade the schema, create the database if missing.

The migration scripts ship inside the package so `neuronetz-gateway migrate` works from
an installed wheel (the Docker image) as well as from a checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import make_url

from neuronetz_gateway.db.engine import connect_postgres

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# pg_advisory_xact_lock key every process takes around an upgrade: "nzgw".
MIGRATION_LOCK_ID = 0x6E7A_6777


def alembic_config(database_url: str) -> Config:
    """An Alembic `Config` pointing at the packaged migrations and `database_url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in percent-encoded passwords.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> list[str]:
    """Bring the schema to `revision` (creating the Postgres database if it is missing).

    Returns the revisions this call applied, in order: empty when the schema was there
    already (or another process, holding the migration lock first, got it there).
    """
    if database_url.startswith("postgresql"):
        asyncio.run(ensure_postgres_database(database_url))
    config = alembic_config(database_url)
    command.upgrade(config, revision)
    return list(config.attributes.get("applied", []))


def _scripts() -> ScriptDirectory:
    """This release's migration scripts (reading them needs no database)."""
    return ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite:///unused"))


def head_revision() -> str:
    """The newest revision this release's migrations know."""
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError("no migrations are packaged")
    return head


def _is_known_revision(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where the database's schema is, measured against this release's migrations."""

    current: str | None
    head: str

    @property
    def ready(self) -> bool:
        """At this release's head, or past it: a revision this release does not know was
        applied by a newer release (this one runs after a rollback of the code)."""
        if self.current is None:
            return False
        return self.current == self.head or not _is_known_revision(self.current)


def schema_status(database_url: str) -> SchemaStatus:
    return SchemaStatus(current=current_revision(database_url), head=head_revision())


def downgrade(database_url: str, revision: str = "base") -> None:
    """Take the schema down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    sync_url = make_url(database_url)
    sync_url = sync_url.set(drivername=sync_url.drivername.split("+")[0])
    if sync_url.drivername == "postgresql":
        return asyncio.run(_pg_current_revision(database_url))
    engine = create_engine(sync_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


async def _pg_current_revision(database_url: str) -> str | None:
    connection = await connect_postgres(asyncpg_dsn(database_url))
    try:
        exists = await connection.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not exists:
            return None
        value = await connection.fetchval("SELECT version_num FROM alembic_version")
        return str(value) if value is not None else None
    finally:
        await connection.close()


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a plain DSN asyncpg accepts (no `+asyncpg` driver part)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def ensure_postgres_database(database_url: str) -> None:
    """Create the database named in `database_url` when the server does not have it.

    A convenience for development and first installs; an operator without CREATEDB
    privilege creates it by hand and this step finds it present.
    """
    url = make_url(database_url)
    name = url.database
    if not name:
        return
    try:
        connection = await connect_postgres(asyncpg_dsn(database_url))
    except asyncpg.InvalidCatalogNameError:
        connection = None
    if connection is not None:
        await connection.close()
        return
    maintenance = url.set(database="postgres", drivername="postgresql")
    admin = await connect_postgres(maintenance.render_as_string(hide_password=False))
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        # Another replica may create it between our check and now: that is success too.
        # Postgres reports that race either way, depending on when the two collide.
        with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            await admin.execute(f"CREATE DATABASE {quoted}")
    finally:
        await admin.close()
