"""The long-lived things one gateway process holds, created and closed by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncEngine

from neuronetz_gateway.config import Settings
from neuronetz_gateway.db.engine import create_engine

# Redis answers in well under a millisecond; a second without an answer means it is
# gone, and the request fails closed (503) instead of waiting.
REDIS_TIMEOUT_SECONDS = 1.0
# Connections per process, sized like the upstream pool (UPSTREAM_MAX_CONNECTIONS'
# default): every request in flight can hold one for its script. Beyond that a command
# waits for a free connection (up to REDIS_TIMEOUT_SECONDS) instead of failing at once,
# as redis-py's default pool (100, non-blocking) did: at 256 connections that turned
# admissions into 503s and failed settlements (docs/PERFORMANCE.md).
REDIS_MAX_CONNECTIONS = 512


@dataclass
class Resources:
    """Connections shared by every request of this process."""

    settings: Settings
    engine: AsyncEngine
    redis: Redis
    upstream: aiohttp.ClientSession

    async def aclose(self) -> None:
        await self.upstream.close()
        await self.redis.aclose()
        await self.engine.dispose()


def create_upstream_session(settings: Settings) -> aiohttp.ClientSession:
    """One pooled aiohttp session for every upstream request of this process (SPEC §2)."""
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


def create_redis(settings: Settings) -> Redis:
    """A Redis client that gives up fast: one immediate retry (a stale pooled connection
    after a Redis restart), no back-off; at most REDIS_MAX_CONNECTIONS connections, a
    command waiting up to REDIS_TIMEOUT_SECONDS for one when all are busy."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)


async def open_resources(settings: Settings) -> Resources:
    """Create (lazily connecting) clients for Postgres, Redis and the upstreams."""
    return Resources(
        settings=settings,
        engine=create_engine(settings.database_url),
        redis=create_redis(settings),
        upstream=create_upstream_session(settings),
    )
