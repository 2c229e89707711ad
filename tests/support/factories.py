"""Test data through the same admin operations the CLI uses (cheap Argon2 parameters)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin import keys, tenants
from neuronetz_gateway.auth.keys import KeyHasher
from neuronetz_gateway.db.tables import Tenant

# Hashes carry their own parameters, so a gateway verifies these cheaply as well.
FAST_HASHER = KeyHasher(time_cost=1, memory_kib=64, parallelism=1)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class KeyFixture:
    secret: str
    prefix: str
    key_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_name: str


async def make_tenant(session: AsyncSession, name: str | None = None) -> Tenant:
    return await tenants.create_tenant(session, name or unique_name())


async def make_key(
    session: AsyncSession,
    tenant_name: str,
    *,
    name: str | None = None,
    expires_in: timedelta | None = None,
    prompt_logging: bool = False,
) -> KeyFixture:
    created = await keys.create_key(
        session,
        FAST_HASHER,
        tenant_name=tenant_name,
        name=name or unique_name("k"),
        expires_in=expires_in,
        prompt_logging=prompt_logging,
    )
    return KeyFixture(
        secret=created.secret,
        prefix=created.key.prefix,
        key_id=created.key.id,
        tenant_id=created.tenant.id,
        tenant_name=created.tenant.name,
    )
