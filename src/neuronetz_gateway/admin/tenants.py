"""Tenants: create, look up, suspend, resume."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.db.tables import TENANT_NAME_PATTERN, Tenant, TenantLimits, TenantStatus

_NAME = re.compile(TENANT_NAME_PATTERN)


def check_tenant_name(name: str) -> None:
    """Raise unless `name` is a valid tenant slug (docs/REFERENCE.md §3.2)."""
    if _NAME.fullmatch(name) is None:
        raise AdminError(
            f"invalid tenant name {name[:70]!r}: use 2-63 characters a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )


async def create_tenant(session: AsyncSession, name: str) -> Tenant:
    """Create an active tenant with an (empty) limits row; names are unique."""
    check_tenant_name(name)
    if await session.scalar(sa.select(Tenant.id).where(Tenant.name == name)) is not None:
        raise AdminError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name, status=TenantStatus.ACTIVE)
    session.add(tenant)
    try:
        await session.flush()
        session.add(TenantLimits(tenant_id=tenant.id, allow_all_models=False))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise AdminError(f"tenant {name!r} already exists") from None
    await session.refresh(tenant)
    return tenant


async def get_tenant(session: AsyncSession, name: str) -> Tenant:
    """The tenant called `name`, or an `AdminError` naming it."""
    tenant = await session.scalar(sa.select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise AdminError(f"unknown tenant {name[:70]!r}")
    return tenant


async def set_tenant_status(session: AsyncSession, name: str, status: TenantStatus) -> Tenant:
    """Suspend or resume the tenant called `name`."""
    tenant = await get_tenant(session, name)
    tenant.status = status
    await session.commit()
    await session.refresh(tenant)
    return tenant
