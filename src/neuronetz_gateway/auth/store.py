"""Loading keys and their configuration from Postgres (on cache misses only).

Two steps, so that every key that fails verification costs the same one query,
whatever it is (unknown, revoked, expired, wrong): `find_key` before Argon2,
`load_principal` (the grants) only after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.auth.principal import MAX_WEIGHT, MIN_WEIGHT, LimitValues, Principal
from neuronetz_gateway.db.tables import (
    LIMIT_FIELDS,
    ApiKey,
    KeyLimits,
    KeyStatus,
    ModelGrant,
    Tenant,
    TenantLimits,
    TenantStatus,
)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key row with its tenant's state: what verification needs, nothing more."""

    key_hash: str
    key_status: KeyStatus
    tenant_status: TenantStatus
    expires_at: datetime | None
    row: RowMapping  # the whole row, for `load_principal` once the key is verified

    def usable_at(self, now: datetime) -> bool:
        """Active and not expired at `now` (the tenant may still be suspended: 403)."""
        return self.key_status is KeyStatus.ACTIVE and (
            self.expires_at is None or self.expires_at > now
        )


_tenant_limits = TenantLimits.__table__
_key_limits = KeyLimits.__table__

_KEY_QUERY = (
    sa.select(
        ApiKey.id.label("key_id"),
        ApiKey.prefix,
        ApiKey.key_hash,
        ApiKey.status.label("key_status"),
        ApiKey.expires_at,
        ApiKey.prompt_logging,
        ApiKey.prompt_log_ttl_hours,
        Tenant.id.label("tenant_id"),
        Tenant.name.label("tenant_name"),
        Tenant.status.label("tenant_status"),
        TenantLimits.allow_all_models.label("t_allow_all"),
        TenantLimits.metrics.label("t_metrics"),
        TenantLimits.weight.label("t_weight"),
        KeyLimits.allow_all_models.label("k_allow_all"),
        *(getattr(TenantLimits, f).label(f"t_{f}") for f in LIMIT_FIELDS),
        *(getattr(KeyLimits, f).label(f"k_{f}") for f in LIMIT_FIELDS),
    )
    .join(Tenant, Tenant.id == ApiKey.tenant_id)
    .outerjoin(TenantLimits, TenantLimits.tenant_id == Tenant.id)
    .outerjoin(KeyLimits, KeyLimits.key_id == ApiKey.id)
    .where(ApiKey.prefix == sa.bindparam("prefix"))
)

_GRANTS_QUERY = sa.select(ModelGrant.key_id, ModelGrant.model_name).where(
    ModelGrant.tenant_id == sa.bindparam("tenant_id"),
    sa.or_(ModelGrant.key_id.is_(None), ModelGrant.key_id == sa.bindparam("key_id")),
)


def _limits(row: RowMapping, side: str) -> LimitValues:
    return LimitValues(**{field: row[f"{side}_{field}"] for field in LIMIT_FIELDS})


def _weight(stored: int | None) -> int:
    """The stored weight within 1..100 (no limits row, or a value written by hand)."""
    if stored is None:
        return 1
    return min(MAX_WEIGHT, max(MIN_WEIGHT, stored))


async def find_key(engine: AsyncEngine, prefix: str) -> KeyRecord | None:
    """The key with display prefix `prefix` and its tenant's state (one query), or None."""
    async with engine.connect() as connection:
        row = (await connection.execute(_KEY_QUERY, {"prefix": prefix})).mappings().first()
    if row is None:
        return None
    return KeyRecord(
        key_hash=row["key_hash"],
        key_status=KeyStatus(row["key_status"]),
        tenant_status=TenantStatus(row["tenant_status"]),
        expires_at=row["expires_at"],
        row=row,
    )


async def load_principal(engine: AsyncEngine, record: KeyRecord) -> Principal:
    """The principal a verified `record` authenticates as: its limits and grants."""
    row = record.row
    async with engine.connect() as connection:
        grants = (
            await connection.execute(
                _GRANTS_QUERY, {"tenant_id": row["tenant_id"], "key_id": row["key_id"]}
            )
        ).all()
    tenant_grants = frozenset(name for key_id, name in grants if key_id is None)
    key_grants = frozenset(name for key_id, name in grants if key_id is not None)
    tenant_limits = _limits(row, "t")
    return Principal(
        tenant_id=row["tenant_id"],
        tenant_name=row["tenant_name"],
        key_id=row["key_id"],
        key_prefix=row["prefix"],
        key_expires_at=row["expires_at"],
        tenant_limits=tenant_limits,
        key_limits=_limits(row, "k").inherit_from(tenant_limits),
        tenant_allow_all_models=bool(row["t_allow_all"]),
        tenant_grants=tenant_grants,
        key_allow_all_models=row["k_allow_all"],
        key_grants=key_grants,
        prompt_logging=row["prompt_logging"],
        prompt_log_ttl_hours=row["prompt_log_ttl_hours"],
        tenant_metrics=bool(row["t_metrics"]),
        tenant_weight=_weight(row["t_weight"]),
    )
