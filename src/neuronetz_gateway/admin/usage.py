"""Token usage of a tenant from the `usage_daily` rollup (docs/REFERENCE.md §3.2, §6 `usage`)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.admin.keys import get_key
from neuronetz_gateway.admin.tenants import get_tenant
from neuronetz_gateway.db.tables import ApiKey, Tenant, UsageDaily

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One day of one key on one model ('' = requests that named no model)."""

    day: date
    key_id: uuid.UUID
    key_prefix: str | None  # None once the key row is gone
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class UsageReport:
    tenant: Tenant
    key_prefix: str | None
    since: date | None
    rows: list[UsageRow]

    @property
    def totals(self) -> UsageTotals:
        return UsageTotals(
            requests=sum(row.requests for row in self.rows),
            prompt_tokens=sum(row.prompt_tokens for row in self.rows),
            completion_tokens=sum(row.completion_tokens for row in self.rows),
        )


def parse_day(value: str, option: str) -> date:
    """A `YYYY-MM-DD` option value; `AdminError` naming `option` otherwise."""
    if _DAY.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass  # e.g. 2026-02-30: reported below like any other malformed day
    raise AdminError(f"invalid {option} {value[:40]!r}: use YYYY-MM-DD")


async def usage_report(
    session: AsyncSession,
    tenant_name: str,
    *,
    key_prefix: str | None = None,
    since: date | None = None,
) -> UsageReport:
    """The tenant's usage per day, key and model, oldest first; one key when named."""
    tenant = await get_tenant(session, tenant_name)
    query = (
        sa.select(
            UsageDaily.day,
            UsageDaily.key_id,
            ApiKey.prefix,
            UsageDaily.model,
            UsageDaily.requests,
            UsageDaily.prompt_tokens,
            UsageDaily.completion_tokens,
        )
        .outerjoin(ApiKey, ApiKey.id == UsageDaily.key_id)
        .where(UsageDaily.tenant_id == tenant.id)
        .order_by(UsageDaily.day, ApiKey.prefix, UsageDaily.key_id, UsageDaily.model)
    )
    if key_prefix is not None:
        key = await get_key(session, key_prefix)
        if key.tenant_id != tenant.id:
            raise AdminError(f"key {key_prefix!r} does not belong to tenant {tenant.name!r}")
        query = query.where(UsageDaily.key_id == key.id)
    if since is not None:
        query = query.where(UsageDaily.day >= since)
    result = await session.execute(query)
    rows = [
        UsageRow(
            day=row.day,
            key_id=row.key_id,
            key_prefix=row.prefix,
            model=row.model,
            requests=row.requests,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
        )
        for row in result
    ]
    return UsageReport(tenant=tenant, key_prefix=key_prefix, since=since, rows=rows)
