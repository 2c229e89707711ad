"""The long-lived things one gateway process holds, created and closed by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.engine import create_engine
from neuronetz_gateway.proxy.http_client import UpstreamClient
from neuronetz_gateway.redis_cluster import ClusterClient, RedisCommands
from neuronetz_gateway.scripting import LuaHost, RedisHost, RespClient, ScriptHost

# Redis answers in well under a millisecond; a second without an answer means it is
# gone, and the request fails closed (503) instead of waiting.
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass
class Resources:
    """Connections shared by every request of this process."""

    settings: Settings
    engine: AsyncEngine
    redis: RedisCommands | None  # None in standalone mode: the limiter lives in this process
    # Probes, discovery, readiness and listings (few requests, any shape).
    upstream: aiohttp.ClientSession
    # Every forwarded request: the lean pooled client (docs/UPSTREAMS.md).
    forwarding: UpstreamClient
    # Where Lua scripts run (docs/SCRIPTING.md): Redis, or this process's one LuaHost in
    # standalone mode. Every component with scripts shares it (one store per process).
    scripts: ScriptHost = field(init=False)

    def __post_init__(self) -> None:
        self.scripts = RedisHost(self.redis) if self.redis is not None else LuaHost()

    async def aclose(self) -> None:
        await self.forwarding.aclose()
        await self.upstream.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def create_upstream_session(settings: Settings) -> aiohttp.ClientSession:
    """One pooled aiohttp session for every upstream request of this process (REFERENCE.md §2)."""
    connector = aiohttp.TCPConnector(
        limit=settings.upstream_max_connections,
        limit_per_host=0,
        ttl_dns_cache=300,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_connect_timeout_seconds,
            sock_read=settings.upstream_read_timeout_seconds,
        ),
        auto_decompress=False,
        # Headers are built explicitly per request; no cookies are ever kept.
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
    )


def create_forwarding_client(settings: Settings) -> UpstreamClient:
    """The client forwarded requests go through, with the session's limits and timeouts."""
    return UpstreamClient(
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.upstream_read_timeout_seconds,
        max_connections=settings.upstream_max_connections,
    )


def create_redis(redis_url: str, *, cluster: bool = False) -> RedisCommands:
    """The process's Redis client: one pipelined connection (per master of a cluster,
    `REDIS_CLUSTER=true`) that gives up after `REDIS_TIMEOUT_SECONDS` (the request then
    fails closed) and reconnects on next use."""
    if cluster:
        return ClusterClient(redis_url, timeout=REDIS_TIMEOUT_SECONDS)
    return RespClient(redis_url, timeout=REDIS_TIMEOUT_SECONDS)


async def open_resources(settings: Settings) -> Resources:
    """Create (lazily connecting) clients for the database, Redis (when configured) and
    the upstreams."""
    return Resources(
        settings=settings,
        engine=create_engine(settings.effective_database_url),
        redis=(
            create_redis(settings.redis_url, cluster=settings.redis_cluster)
            if settings.redis_url is not None
            else None
        ),
        upstream=create_upstream_session(settings),
        forwarding=create_forwarding_client(settings),
    )
