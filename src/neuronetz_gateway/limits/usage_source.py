"""Where a missing budget counter is rebuilt from: `usage_daily`, the truth (REFERENCE.md §4.6)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.db.tables import UsageDaily


class UsageSource(Protocol):
    async def used_tokens(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID | None, since: date | None
    ) -> int:
        """Prompt + completion tokens of the key (None: the whole tenant) on days >= since
        (None: all time)."""
        ...


class PostgresUsageSource:
    """Sums `usage_daily` with one query per counter; runs only on a cache miss."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def used_tokens(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID | None, since: date | None
    ) -> int:
        tokens = UsageDaily.prompt_tokens + UsageDaily.completion_tokens
        query = sa.select(sa.func.coalesce(sa.func.sum(tokens), 0)).where(
            UsageDaily.tenant_id == tenant_id
        )
        if key_id is not None:
            query = query.where(UsageDaily.key_id == key_id)
        if since is not None:
            query = query.where(UsageDaily.day >= since)
        async with self._engine.connect() as connection:
            total = await connection.scalar(query)
        return int(total or 0)
