"""Model grants (docs/REFERENCE.md §3.2 `model_grants`, §4.4): tenant-wide and key-level.

Grants store the model's catalog name (`llama3` is stored as `llama3:latest`). A model
unknown to the catalog is refused unless forced, so a typo cannot create a grant that
silently never matches. Results carry warnings for grants that are legal but do not do
what an operator might expect (key ⊆ tenant, a key leaving or returning to "inherit").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.admin.keys import get_key
from neuronetz_gateway.admin.models import check_model_name, find_model
from neuronetz_gateway.admin.tenants import get_tenant
from neuronetz_gateway.catalog.models import with_default_tag, without_default_tag
from neuronetz_gateway.db.tables import (
    ApiKey,
    KeyLimits,
    KeyStatus,
    ModelGrant,
    Tenant,
    TenantLimits,
)


@dataclass(frozen=True, slots=True)
class GrantChange:
    """The outcome of a grant or revoke; `warnings` are lines for stderr."""

    tenant: Tenant
    key: ApiKey | None
    model: str
    changed: bool
    warnings: tuple[str, ...] = ()


async def _scope(
    session: AsyncSession, tenant_name: str, key_prefix: str | None
) -> tuple[Tenant, ApiKey | None]:
    tenant = await get_tenant(session, tenant_name)
    if key_prefix is None:
        return tenant, None
    key = await get_key(session, key_prefix)
    if key.tenant_id != tenant.id:
        raise AdminError(f"key {key.prefix} does not belong to tenant {tenant.name!r}")
    return tenant, key


def _aliases(name: str) -> set[str]:
    """The names a grant for `name` may be stored under (`x` and `x:latest`)."""
    return {name, with_default_tag(name), without_default_tag(name)}


def _grant_scope(tenant_id: uuid.UUID, key_id: uuid.UUID | None) -> list[sa.ColumnElement[bool]]:
    key_clause = ModelGrant.key_id.is_(None) if key_id is None else ModelGrant.key_id == key_id
    return [ModelGrant.tenant_id == tenant_id, key_clause]


async def _has_grant(
    session: AsyncSession, tenant_id: uuid.UUID, key_id: uuid.UUID | None, model: str
) -> bool:
    found = await session.scalar(
        sa.select(ModelGrant.id).where(
            *_grant_scope(tenant_id, key_id), ModelGrant.model_name.in_(_aliases(model))
        )
    )
    return found is not None


async def _key_grant_count(session: AsyncSession, key_id: uuid.UUID) -> int:
    count = await session.scalar(
        sa.select(sa.func.count()).select_from(ModelGrant).where(ModelGrant.key_id == key_id)
    )
    return int(count or 0)


async def _key_allow_all(session: AsyncSession, key_id: uuid.UUID) -> bool | None:
    return await session.scalar(
        sa.select(KeyLimits.allow_all_models).where(KeyLimits.key_id == key_id)
    )


async def _tenant_may_use(session: AsyncSession, tenant_id: uuid.UUID, model: str) -> bool:
    allow_all = await session.scalar(
        sa.select(TenantLimits.allow_all_models).where(TenantLimits.tenant_id == tenant_id)
    )
    return bool(allow_all) or await _has_grant(session, tenant_id, None, model)


async def _model_to_grant(session: AsyncSession, model: str, force: bool) -> tuple[str, list[str]]:
    row = await find_model(session, model)
    if row is None:
        if not force:
            raise AdminError(
                f"model {model[:70]!r} is not in the catalog (see list-models --all); "
                "pass --force to grant it anyway"
            )
        return check_model_name(model), []
    if not row.available:
        return row.name, [
            f"model {row.name} is currently unavailable; the grant applies once it is back"
        ]
    return row.name, []


async def grant_model(
    session: AsyncSession,
    *,
    tenant_name: str,
    model: str,
    key_prefix: str | None = None,
    force: bool = False,
) -> GrantChange:
    """Grant `model` to the tenant, or to one of its keys; idempotent."""
    tenant, key = await _scope(session, tenant_name, key_prefix)
    if key is not None and key.status == KeyStatus.REVOKED:
        raise AdminError(f"key {key.prefix} is revoked")
    name, warnings = await _model_to_grant(session, model, force)
    key_id = key.id if key is not None else None
    if await _has_grant(session, tenant.id, key_id, name):
        return GrantChange(tenant, key, name, changed=False, warnings=tuple(warnings))

    if key is not None:
        if not await _tenant_may_use(session, tenant.id, name):
            warnings.append(
                f"tenant {tenant.name} may not use model {name}: this key-level grant has no "
                "effect until it may (a key never exceeds its tenant)"
            )
        if await _key_allow_all(session, key.id) is None and not await _key_grant_count(
            session, key.id
        ):
            warnings.append(
                f"key {key.prefix} no longer inherits the tenant's models: "
                "it may now use only its key-level grants"
            )
    session.add(ModelGrant(tenant_id=tenant.id, key_id=key_id, model_name=name))
    try:
        await session.commit()
    except IntegrityError:  # granted concurrently: the outcome is the same
        await session.rollback()
        return GrantChange(tenant, key, name, changed=False, warnings=tuple(warnings))
    return GrantChange(tenant, key, name, changed=True, warnings=tuple(warnings))


async def revoke_model(
    session: AsyncSession, *, tenant_name: str, model: str, key_prefix: str | None = None
) -> GrantChange:
    """Remove the grant of `model` (under any of its names); idempotent."""
    tenant, key = await _scope(session, tenant_name, key_prefix)
    key_id = key.id if key is not None else None
    result = await session.execute(
        sa.delete(ModelGrant)
        .where(*_grant_scope(tenant.id, key_id), ModelGrant.model_name.in_(_aliases(model)))
        .returning(ModelGrant.model_name)
    )
    removed = list(result.scalars())
    warnings: list[str] = []
    if (
        removed
        and key is not None
        and await _key_allow_all(session, key.id) is None
        and not await _key_grant_count(session, key.id)
    ):
        warnings.append(
            f"key {key.prefix} has no key-level grants left: "
            "it inherits all of the tenant's models again"
        )
    await session.commit()
    name = removed[0] if removed else with_default_tag(model)
    return GrantChange(tenant, key, name, changed=bool(removed), warnings=tuple(warnings))


@dataclass(frozen=True, slots=True)
class GrantEntry:
    model: str
    key_prefix: str | None  # None: tenant-wide


async def list_grants(session: AsyncSession, tenant_name: str) -> list[GrantEntry]:
    """The tenant's grants: tenant-wide first, then per key, each sorted by model."""
    tenant = await get_tenant(session, tenant_name)
    rows = await session.execute(
        sa.select(ModelGrant.model_name, ApiKey.prefix)
        .outerjoin(ApiKey, ApiKey.id == ModelGrant.key_id)
        .where(ModelGrant.tenant_id == tenant.id)
        .order_by(ApiKey.prefix.is_not(None), ApiKey.prefix, ModelGrant.model_name)
    )
    return [GrantEntry(model=row.model_name, key_prefix=row.prefix) for row in rows]
