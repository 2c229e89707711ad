"""`/api/ps` with several servers: ask every server in rotation at once (docs/REFERENCE.md §4.4).

What is loaded is only known to each Ollama, so the gateway asks all of them and merges
what came back (`api.listings.merge_ps`); servers that fail are left out and reported
to the pool like any failed exchange.
"""

from __future__ import annotations

import asyncio

import aiohttp

from neuronetz_gateway.proxy.forward import no_upstream, upstream_failed
from neuronetz_gateway.proxy.upstreams import (
    CONNECT,
    STATUS,
    STREAM,
    TIMEOUT,
    Upstream,
    UpstreamPool,
)

PS_PATH = "/api/ps"


async def loaded_models(
    session: aiohttp.ClientSession,
    pool: UpstreamPool,
    timeout: float,  # noqa: ASYNC109 - a per-request deadline, passed to aiohttp
) -> list[bytes]:
    """The `/api/ps` bodies of the servers in rotation that answered 200, in
    configuration order. 503 when no server is in rotation, 502 when none answered."""
    servers = pool.in_rotation()
    if not servers:
        raise no_upstream(None, pool.retry_after())
    answers = await asyncio.gather(*(_ask(session, pool, u, timeout) for u in servers))
    found = [answer for answer in answers if answer is not None]
    if not found:
        raise upstream_failed()
    return found


async def _ask(
    session: aiohttp.ClientSession,
    pool: UpstreamPool,
    upstream: Upstream,
    timeout: float,  # noqa: ASYNC109 - a per-request deadline, passed to aiohttp
) -> bytes | None:
    pool.begin(upstream)
    try:
        async with session.get(
            upstream.url(PS_PATH),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            content = await response.read()
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
        pool.failed(upstream, CONNECT)
        return None
    except TimeoutError:
        pool.failed(upstream, TIMEOUT)
        return None
    except (aiohttp.ClientError, ValueError):
        pool.failed(upstream, STREAM)
        return None
    finally:
        pool.end(upstream)
    if response.status != 200:
        pool.failed(upstream, STATUS)
        return None
    return content
