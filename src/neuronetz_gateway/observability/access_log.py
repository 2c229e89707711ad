"""The access log: exactly one structured line per request (SPEC §4.10, §5).

Fields: request id, method, route, status, outcome, tenant (name), key prefix, model,
token counts, latency, time to first byte, upstream time and server, client address.
Never a key, a prompt or a response: every value comes from the gateway's own
bookkeeping, not from the request or response bodies. A path outside the allowlist is
logged in the canonical, length-capped form the audit row uses, with anything shaped
like a key cut out (a client may paste one into a URL).

In JSON mode the line is written by a structlog logger of its own straight to stdout
(timestamp, level, renderer; nothing else), which costs a few microseconds instead
of a pass through the standard library's logging machinery. In console mode it goes
through the ordinary logger, for readability.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import orjson
import structlog

from neuronetz_gateway.context import Exchange

LOGGER_NAME = "neuronetz_gateway.access"
EVENT = "request"

_KEY_LIKE = re.compile(r"nz_[0-9A-Za-z]+", re.IGNORECASE)


def _json_bytes(event: Any, **_: Any) -> bytes:
    return orjson.dumps(event, default=str)


def _json_logger(level: str) -> Any:
    """A bound logger rendering JSON lines onto stdout's byte stream, with no other stages."""
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:  # stdout replaced by a text-only object (some test runners)
        return structlog.get_logger(LOGGER_NAME)
    wrapper = structlog.make_filtering_bound_logger(logging.getLevelName(level))
    processors: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.JSONRenderer(serializer=_json_bytes),
    ]
    # bind() once: the logger itself, not a lazy proxy resolving it on every call.
    proxy = structlog.wrap_logger(structlog.BytesLogger(stream), processors, wrapper)
    return proxy.bind(logger=LOGGER_NAME, pid=os.getpid())


def loggable_route(exchange: Exchange) -> str:
    """The route as logged: the allowlisted name, or the audited path without key-like text."""
    if exchange.route is not None:
        return exchange.route.name
    route = exchange.audit_route
    return _KEY_LIKE.sub("nz_<redacted>", route) if "nz_" in route.lower() else route


class AccessLog:
    def __init__(self, level: str = "INFO", fmt: str = "json") -> None:
        if fmt == "json":
            self._log = _json_logger(level)
        else:
            self._log = structlog.get_logger(LOGGER_NAME)

    def write(self, exchange: Exchange, latency_ms: float) -> None:
        """Log the finished `exchange`."""
        principal = exchange.principal
        upstream_ms = exchange.upstream_ms
        first_byte_ms = exchange.first_byte_ms
        self._log.info(
            EVENT,
            request_id=exchange.request_id,
            method=exchange.method,
            route=loggable_route(exchange),
            status=exchange.status,
            outcome=exchange.outcome.value,
            tenant=principal.tenant_name if principal is not None else None,
            key_prefix=principal.key_prefix if principal is not None else None,
            model=exchange.model,
            prompt_tokens=exchange.prompt_tokens,
            completion_tokens=exchange.completion_tokens,
            latency_ms=round(latency_ms, 2),
            ttfb_ms=round(first_byte_ms, 2) if first_byte_ms is not None else None,
            upstream_ms=round(upstream_ms, 2) if upstream_ms is not None else None,
            upstream=exchange.upstream,
            client_ip=exchange.client_ip,
        )
