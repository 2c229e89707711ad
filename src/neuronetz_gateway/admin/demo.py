"""`serve --demo`: a tenant that may use every model, and a fresh key for it."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.keys import CreatedKey, create_key
from neuronetz_gateway.admin.limits import LimitUpdate, set_tenant_limits
from neuronetz_gateway.admin.tenants import create_tenant
from neuronetz_gateway.auth.keys import KeyHasher
from neuronetz_gateway.db.tables import Tenant

DEMO_TENANT = "demo"


async def create_demo_key(session: AsyncSession, hasher: KeyHasher) -> CreatedKey:
    """Tenant `demo` (created when missing) may use every model; returns a new key of it.

    Each call makes another key (named by the time), so a restart with `--demo` never
    needs the secret of an earlier one; revoke them like any key.
    """
    exists = await session.scalar(sa.select(Tenant.id).where(Tenant.name == DEMO_TENANT))
    if exists is None:
        await create_tenant(session, DEMO_TENANT)
    await set_tenant_limits(session, DEMO_TENANT, LimitUpdate(allow_all_models=True))
    name = f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    return await create_key(session, hasher, tenant_name=DEMO_TENANT, name=name)
