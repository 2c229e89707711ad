"""API keys: create (returning the secret once), list, revoke."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.admin.tenants import get_tenant
from neuronetz_gateway.auth.keys import KeyHasher, generate_key, is_display_prefix
from neuronetz_gateway.db.tables import ApiKey, KeyStatus, Tenant

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,127}")


@dataclass(frozen=True)
class CreatedKey:
    """A new key row and its secret, which exists nowhere else once this is dropped."""

    key: ApiKey
    tenant: Tenant
    secret: str


def check_key_name(name: str) -> None:
    if _KEY_NAME.fullmatch(name) is None:
        raise AdminError(
            f"invalid key name {name[:70]!r}: use 1-128 characters A-Z, a-z, 0-9, "
            "space, '.', '_' and '-', starting with a letter or digit"
        )


async def create_key(
    session: AsyncSession,
    hasher: KeyHasher,
    *,
    tenant_name: str,
    name: str,
    expires_in: timedelta | None = None,
    prompt_logging: bool = False,
    prompt_log_ttl_hours: int | None = None,
) -> CreatedKey:
    """Create an active key for the tenant; only its Argon2id hash is stored."""
    check_key_name(name)
    tenant = await get_tenant(session, tenant_name)
    duplicate = await session.scalar(
        sa.select(ApiKey.id).where(
            ApiKey.tenant_id == tenant.id,
            ApiKey.name == name,
            ApiKey.status == KeyStatus.ACTIVE,
        )
    )
    if duplicate is not None:
        raise AdminError(f"tenant {tenant.name!r} already has an active key named {name!r}")
    generated = generate_key()
    row = ApiKey(
        tenant_id=tenant.id,
        name=name,
        prefix=generated.prefix,
        key_hash=hasher.hash(generated.secret),
        status=KeyStatus.ACTIVE,
        expires_at=datetime.now(UTC) + expires_in if expires_in else None,
        prompt_logging=prompt_logging,
        prompt_log_ttl_hours=prompt_log_ttl_hours,
    )
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise AdminError(f"could not create key {name!r}: it conflicts with another key") from None
    await session.refresh(row)
    return CreatedKey(key=row, tenant=tenant, secret=generated.secret)


async def list_keys(session: AsyncSession, tenant_name: str) -> list[ApiKey]:
    """The tenant's keys, oldest first."""
    tenant = await get_tenant(session, tenant_name)
    result = await session.scalars(
        sa.select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at)
    )
    return list(result)


async def get_key(session: AsyncSession, prefix: str) -> ApiKey:
    """The key with display prefix `prefix`, or an `AdminError` naming it."""
    if not is_display_prefix(prefix):
        raise AdminError(f"invalid key prefix {prefix[:70]!r}: expected nz_ and 8 of a-z, 0-9")
    key = await session.scalar(sa.select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise AdminError(f"unknown key {prefix!r}")
    return key


async def revoke_key(session: AsyncSession, prefix: str) -> tuple[ApiKey, bool]:
    """Revoke the key; returns it and whether this call changed it (False if already)."""
    key = await get_key(session, prefix)
    if key.status == KeyStatus.REVOKED:
        return key, False
    key.status = KeyStatus.REVOKED
    key.revoked_at = datetime.now(UTC)
    await session.commit()
    await session.refresh(key)
    return key, True
