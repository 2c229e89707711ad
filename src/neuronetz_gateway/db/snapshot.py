"""What the configuration tables hold, and the changes between two such snapshots.

Standalone mode has no triggers and no NOTIFY; `SqlitePoller` learns *that* the file
changed, and a diff of two snapshots tells *what* changed, in the terms of the Postgres
triggers of REFERENCE.md §3.3 (0001_initial): a revoked or deleted key, and which tenant or key a
configuration change concerns. Bookkeeping columns (`last_used_at`, `updated_at`,
`last_seen_at`) are left out, as the triggers ignore them: the gateway itself writes
them all the time.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.db.notify import ConfigChange
from neuronetz_gateway.db.tables import LIMIT_FIELDS, Base, KeyStatus

Row = tuple[Any, ...]
TableRows = dict[Any, Row]

# table -> (primary key column, the columns whose change is a configuration change)
_CONFIG_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tenants": ("id", ("name", "status")),
    "api_keys": (
        "id",
        (
            "tenant_id",
            "prefix",
            "name",
            "key_hash",
            "status",
            "expires_at",
            "revoked_at",
            "prompt_logging",
            "prompt_log_ttl_hours",
        ),
    ),
    "tenant_limits": ("tenant_id", (*LIMIT_FIELDS, "allow_all_models", "metrics")),
    "key_limits": ("key_id", (*LIMIT_FIELDS, "allow_all_models")),
    "model_grants": ("id", ("tenant_id", "key_id", "model_name")),
    "models": ("name", ("digest", "size_bytes", "details", "available", "upstream", "modified_at")),
}
_TABLES: dict[str, sa.Table] = {name: Base.metadata.tables[name] for name in _CONFIG_COLUMNS}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Each configuration table as {primary key: the columns that matter}."""

    tables: Mapping[str, TableRows]


@dataclass(frozen=True, slots=True)
class Changes:
    """What differs between two snapshots."""

    revoked_prefixes: tuple[str, ...]
    config: tuple[ConfigChange, ...]
    models_changed: bool

    @property
    def empty(self) -> bool:
        return not (self.revoked_prefixes or self.config or self.models_changed)


async def take_snapshot(engine: AsyncEngine) -> Snapshot:
    """Read every configuration table (one query each; small tables)."""
    tables: dict[str, TableRows] = {}
    async with engine.connect() as connection:
        for name, (key, columns) in _CONFIG_COLUMNS.items():
            table = _TABLES[name]
            query = sa.select(table.c[key], *(table.c[column] for column in columns))
            result = await connection.execute(query)
            tables[name] = {row[0]: tuple(row[1:]) for row in result}
    return Snapshot(tables)


def _column(table: str, row: Row, column: str) -> Any:
    return row[_CONFIG_COLUMNS[table][1].index(column)]


def _config_change(table: str, key: Any, row: Row) -> ConfigChange:
    """The change as the trigger would name it: tenant and key ids where the row has them."""
    tenant_id: uuid.UUID | None = None
    key_id: uuid.UUID | None = None
    if table in ("tenants", "tenant_limits"):
        tenant_id = key
    elif table == "api_keys":
        tenant_id, key_id = _column(table, row, "tenant_id"), key
    elif table == "key_limits":
        key_id = key
    elif table == "model_grants":
        tenant_id, key_id = _column(table, row, "tenant_id"), _column(table, row, "key_id")
    return ConfigChange(table=table, tenant_id=tenant_id, key_id=key_id)


def diff(before: Snapshot, after: Snapshot) -> Changes:
    """The changes from `before` to `after`: what the triggers would have sent."""
    revoked: list[str] = []
    config: list[ConfigChange] = []
    models_changed = False
    for table in _CONFIG_COLUMNS:
        old_rows, new_rows = before.tables.get(table, {}), after.tables.get(table, {})
        for key in sorted(old_rows.keys() | new_rows.keys(), key=str):
            old, new = old_rows.get(key), new_rows.get(key)
            if old == new:
                continue
            if table == "models":
                models_changed = True
                continue
            if table == "api_keys" and old is not None and _is_revocation(old, new):
                revoked.append(_column(table, old, "prefix"))
            row = new if new is not None else old
            if row is not None:
                config.append(_config_change(table, key, row))
    return Changes(tuple(revoked), tuple(config), models_changed)


def _is_revocation(old: Row, new: Row | None) -> bool:
    """Deleted, or its status turned to revoked (the `notify_key_revoked` trigger)."""
    if new is None:
        return True
    status = _CONFIG_COLUMNS["api_keys"][1].index("status")
    return bool(new[status] == KeyStatus.REVOKED and old[status] != new[status])
