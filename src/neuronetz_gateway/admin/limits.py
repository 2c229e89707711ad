"""Tenant and key limits (docs/REFERENCE.md §3.2 `tenant_limits`, `key_limits`; §4.5, §4.6).

A tenant's null means "unlimited", a key's null means "inherit the tenant's value".
Zero is a legal value: `rpm 0` or `daily_tokens 0` means "nothing is allowed", which
is how an operator stops a subject without revoking it. The same row holds whether the
tenant's usage is exported as metrics (§5; at most `METRICS_MAX_TENANTS` tenants).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.admin.keys import get_key
from neuronetz_gateway.admin.tenants import get_tenant
from neuronetz_gateway.auth.principal import MAX_WEIGHT, MIN_WEIGHT, UNLIMITED, LimitValues
from neuronetz_gateway.db.tables import (
    LIMIT_FIELDS,
    ApiKey,
    KeyLimits,
    KeyStatus,
    Tenant,
    TenantLimits,
)

CLEAR = "none"
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
# The column widths of docs/REFERENCE.md §3.2 (rpm and max_concurrent are int, the rest bigint).
LIMIT_MAXIMUM = {
    name: _INT32_MAX if name in ("rpm", "max_concurrent") else _INT64_MAX for name in LIMIT_FIELDS
}


def parse_weight(value: str) -> int:
    """A tenant's weight (docs/SCHEDULING.md): a whole number 1..100; else AdminError."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not MIN_WEIGHT <= int(text) <= MAX_WEIGHT:
        raise AdminError(f"{value[:40]!r} is not a whole number from {MIN_WEIGHT} to {MAX_WEIGHT}")
    return int(text)


def parse_limit(value: str, field_name: str) -> int | None:
    """`"none"` → None (clear); a whole number 0..max → int; else AdminError."""
    text = value.strip()
    if text.lower() == CLEAR:
        return None
    if not text.isascii() or not text.isdigit():
        raise AdminError(f"{value[:40]!r} is not a whole number ≥ 0 or 'none'")
    number = int(text)
    if number > LIMIT_MAXIMUM[field_name]:
        raise AdminError(f"{number} is larger than {LIMIT_MAXIMUM[field_name]}")
    return number


@dataclass(frozen=True, slots=True)
class LimitUpdate:
    """What to change; fields not named in `values` stay as they are."""

    values: Mapping[str, int | None] = field(default_factory=dict)
    allow_all_models: bool | None = None  # None: unchanged
    inherit_models: bool = False  # keys only: allow_all_models back to NULL
    weight: int | None = None  # tenants only; None: unchanged

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(LIMIT_FIELDS)
        if unknown:
            raise AdminError(f"unknown limit {sorted(unknown)[0]!r}")
        for name, number in self.values.items():
            if number is not None and not 0 <= number <= LIMIT_MAXIMUM[name]:
                raise AdminError(f"{name} must be between 0 and {LIMIT_MAXIMUM[name]}")
        if self.weight is not None and not MIN_WEIGHT <= self.weight <= MAX_WEIGHT:
            raise AdminError(f"weight must be between {MIN_WEIGHT} and {MAX_WEIGHT}")
        if self.inherit_models and self.allow_all_models is not None:
            raise AdminError(
                "--inherit-models conflicts with --allow-all-models/--no-allow-all-models"
            )

    @property
    def is_empty(self) -> bool:
        return (
            not self.values
            and self.allow_all_models is None
            and not self.inherit_models
            and self.weight is None
        )


@dataclass(frozen=True, slots=True)
class TenantLimitsView:
    tenant_id: uuid.UUID
    tenant_name: str
    limits: LimitValues
    allow_all_models: bool
    metrics: bool
    weight: int = 1


@dataclass(frozen=True, slots=True)
class KeyLimitsView:
    key_id: uuid.UUID
    key_prefix: str
    tenant: TenantLimitsView
    own: LimitValues  # as stored: None means inherit
    effective: LimitValues  # what admission applies, besides the tenant's own limits
    allow_all_models: bool | None  # None: inherit


def limit_values(row: TenantLimits | KeyLimits | None) -> LimitValues:
    if row is None:
        return UNLIMITED
    return LimitValues(**{name: getattr(row, name) for name in LIMIT_FIELDS})


async def _ensure_row(session: AsyncSession, table: Any, values: dict[str, Any]) -> None:
    """Insert the limits row unless it exists; safe against a concurrent insert."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await session.execute(insert(table).values(**values).on_conflict_do_nothing())


def _apply(row: TenantLimits | KeyLimits, update: LimitUpdate) -> None:
    for name, number in update.values.items():
        setattr(row, name, number)


async def _tenant_view(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> TenantLimitsView:
    row = await session.get(TenantLimits, tenant_id, populate_existing=True)
    return TenantLimitsView(
        tenant_id=tenant_id,
        tenant_name=name,
        limits=limit_values(row),
        allow_all_models=bool(row and row.allow_all_models),
        metrics=bool(row and row.metrics),
        weight=row.weight if row is not None else 1,
    )


async def _locked_row[Row: (TenantLimits, KeyLimits)](
    session: AsyncSession, table: type[Row], where: sa.ColumnElement[bool]
) -> Row:
    result = await session.execute(
        sa.select(table).where(where).with_for_update().execution_options(populate_existing=True)
    )
    return result.scalar_one()


async def set_tenant_limits(
    session: AsyncSession, tenant_name: str, update: LimitUpdate
) -> TenantLimitsView:
    """Change the tenant's limits (creating its row if missing); returns the result.

    An empty update writes nothing and just returns the current limits.
    """
    if update.inherit_models:
        raise AdminError("--inherit-models applies to keys only; a tenant inherits nothing")
    tenant = await get_tenant(session, tenant_name)
    if not update.is_empty:
        await _ensure_row(
            session, TenantLimits, {"tenant_id": tenant.id, "allow_all_models": False}
        )
        row = await _locked_row(session, TenantLimits, TenantLimits.tenant_id == tenant.id)
        _apply(row, update)
        if update.allow_all_models is not None:
            row.allow_all_models = update.allow_all_models
        if update.weight is not None:
            row.weight = update.weight
        await session.commit()
    return await _tenant_view(session, tenant.id, tenant.name)


async def set_tenant_metrics(
    session: AsyncSession, tenant_name: str, enabled: bool, *, max_tenants: int
) -> TenantLimitsView:
    """Mark the tenant's usage for export as metrics, or unmark it; returns the result.

    Marking is refused while `max_tenants` tenants are marked already (the gateway would
    not export more: docs/OBSERVABILITY.md, "Per-tenant usage").
    """
    tenant = await get_tenant(session, tenant_name)
    await _ensure_row(session, TenantLimits, {"tenant_id": tenant.id, "allow_all_models": False})
    row = await _locked_row(session, TenantLimits, TenantLimits.tenant_id == tenant.id)
    if enabled and not row.metrics:
        marked = await session.scalar(
            sa.select(sa.func.count()).select_from(TenantLimits).where(TenantLimits.metrics)
        )
        if (marked or 0) >= max_tenants:
            raise AdminError(
                f"{marked} tenants have metrics on already (METRICS_MAX_TENANTS={max_tenants});"
                " turn one off or raise the limit"
            )
    row.metrics = enabled
    await session.commit()
    return await _tenant_view(session, tenant.id, tenant.name)


async def set_key_limits(session: AsyncSession, prefix: str, update: LimitUpdate) -> KeyLimitsView:
    """Change the key's own limits (creating its row if missing); returns the result.

    An empty update writes nothing and just returns the current limits.
    """
    if update.weight is not None:
        raise AdminError("--weight applies to tenants only; a key shares its tenant's")
    key = await get_key(session, prefix)
    if not update.is_empty:
        if key.status == KeyStatus.REVOKED:
            raise AdminError(f"key {key.prefix} is revoked")
        await _ensure_row(session, KeyLimits, {"key_id": key.id})
        row = await _locked_row(session, KeyLimits, KeyLimits.key_id == key.id)
        _apply(row, update)
        if update.allow_all_models is not None:
            row.allow_all_models = update.allow_all_models
        if update.inherit_models:
            row.allow_all_models = None
        await session.commit()
    return await key_limits_view(session, key)


async def key_limits_view(session: AsyncSession, key: ApiKey) -> KeyLimitsView:
    """The key's stored and effective limits, with its tenant's."""
    tenant = await session.get_one(Tenant, key.tenant_id)
    tenant_view = await _tenant_view(session, tenant.id, tenant.name)
    row = await session.get(KeyLimits, key.id, populate_existing=True)
    own = limit_values(row)
    return KeyLimitsView(
        key_id=key.id,
        key_prefix=key.prefix,
        tenant=tenant_view,
        own=own,
        effective=own.inherit_from(tenant_view.limits),
        allow_all_models=row.allow_all_models if row is not None else None,
    )


async def effective_limits(
    session: AsyncSession, key_id: uuid.UUID
) -> tuple[LimitValues, LimitValues]:
    """(the tenant's limits, the key's effective limits: its own value, else the tenant's)."""
    tenant_id = await session.scalar(sa.select(ApiKey.tenant_id).where(ApiKey.id == key_id))
    if tenant_id is None:
        raise AdminError(f"unknown key id {key_id}")
    tenant_row = await session.get(TenantLimits, tenant_id, populate_existing=True)
    key_row = await session.get(KeyLimits, key_id, populate_existing=True)
    tenant = limit_values(tenant_row)
    return tenant, limit_values(key_row).inherit_from(tenant)
