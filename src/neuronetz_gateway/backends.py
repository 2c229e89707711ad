"""Which implementation of each backing service this process uses.

Postgres + Redis is the production path (any number of replicas). Without
`DATABASE_URL` the database is a SQLite file under `DATA_DIR`; without `REDIS_URL` the
limiter lives in this process. Either makes it standalone mode: one process, one
replica (docs/STANDALONE.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.background import BackgroundTask
from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.notify import ChangeHandlers, ChangeListener
from neuronetz_gateway.db.poll import SqlitePoller
from neuronetz_gateway.limits import Limiter, UsageSource
from neuronetz_gateway.limits.script_limiter import ScriptLimiter
from neuronetz_gateway.scripting import ScriptHost


def describe(settings: Settings) -> dict[str, str]:
    """The mode and backends, for the start-up log line."""
    return {
        "mode": "standalone" if settings.standalone else "production",
        "database": "sqlite" if settings.uses_sqlite else "postgres",
        "limiter": _limiter_store(settings),
    }


def _limiter_store(settings: Settings) -> str:
    if settings.redis_url is None:
        return "memory"
    return "redis-cluster" if settings.redis_cluster else "redis"


def create_limiter(settings: Settings, scripts: ScriptHost, usage: UsageSource) -> Limiter:
    """The limiter's scripts on the process's script host: Redis when configured, else
    the in-process `LuaHost` (standalone mode); the same Lua either way."""
    return ScriptLimiter(
        scripts,
        usage,
        lease_seconds=settings.concurrency_lease_seconds,
        default_max_output_tokens=settings.budget_default_max_output_tokens,
    )


def create_change_feed(
    settings: Settings,
    engine: AsyncEngine,
    handlers: ChangeHandlers,
    *,
    on_models_changed: Callable[[], Awaitable[None]],
) -> BackgroundTask:
    """What delivers configuration changes other processes make (docs/REFERENCE.md §3.3):
    LISTEN on Postgres; on SQLite, a poller (models have no trigger on Postgres, and
    the catalog reloads every discovery interval there; the poller sees them for free)."""
    if settings.uses_sqlite:
        return SqlitePoller(engine, handlers, on_models_changed=on_models_changed)
    return ChangeListener(settings.listen_database_url, handlers)
