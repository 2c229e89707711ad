"""Turning prompt logging on or off for an existing key (docs/REFERENCE.md §4.10).

The change reaches every replica through the config-change notification on `api_keys`
(docs/REFERENCE.md §3.3), so it applies within a second without a restart.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from neuronetz_gateway.admin.errors import AdminError
from neuronetz_gateway.admin.keys import get_key
from neuronetz_gateway.db.tables import ApiKey


async def set_prompt_logging(
    session: AsyncSession, prefix: str, *, enabled: bool, ttl_hours: int | None = None
) -> ApiKey:
    """Switch prompt logging of the key `prefix`; `ttl_hours` (only with `enabled`) sets how
    long its logs live, else the key keeps its TTL (None: PROMPT_LOG_DEFAULT_TTL_HOURS)."""
    if ttl_hours is not None and not enabled:
        raise AdminError("a prompt log TTL applies only when turning prompt logging on")
    if ttl_hours is not None and ttl_hours < 1:
        raise AdminError("the prompt log TTL must be at least 1 hour")
    key = await get_key(session, prefix)
    key.prompt_logging = enabled
    if ttl_hours is not None:
        key.prompt_log_ttl_hours = ttl_hours
    await session.commit()
    await session.refresh(key)
    return key
