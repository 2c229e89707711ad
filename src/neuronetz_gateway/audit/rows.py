"""Turning audit records into the rows one batch writes.

Values come from clients (model names, prompts, user agents), so they are made safe for
the database here, off the hot path: a NUL character, an over-long string or a
malformed address must never make Postgres refuse a batch, which would stall auditing
for everyone. Pure functions; no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson

from neuronetz_gateway.audit.records import AuditRecord

# Column widths of audit_log / prompt_logs (db.tables).
REQUEST_ID_MAX = 128
METHOD_MAX = 16
ROUTE_MAX = 64
MODEL_MAX = 255
USER_AGENT_MAX = 512
INT32_MAX = 2**31 - 1
SMALLINT_MAX = 2**15 - 1

UNSERIALIZABLE_REQUEST = '{"unloggable": "request body could not be stored as JSON"}'

# An escaped NUL (`\u0000`) preceded by an even number of backslashes, i.e. a real NUL
# escape rather than the text "\u0000" written by the client: jsonb refuses only those.
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")

UsageKey = tuple[date, uuid.UUID, uuid.UUID, str]


def clean_text(value: str, limit: int | None = None) -> str:
    """`value` truncated to `limit`, without NUL and lone surrogates (Postgres refuses both)."""
    if limit is not None and len(value) > limit:
        value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _optional_text(value: str | None, limit: int) -> str | None:
    return None if value is None else clean_text(str(value), limit)


def utc(ts: datetime) -> datetime:
    """`ts` in UTC; a naive value is taken to be UTC already."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _clamp(value: int, upper: int) -> int:
    return min(max(0, int(value)), upper)


def clean_ip(value: str | None) -> str | None:
    """A valid IP address for the `inet` column, or None (never a refused batch)."""
    if not value:
        return None
    return _parse_ip(value)


# Client addresses repeat from request to request; parsing them is a visible share of a
# batch's CPU time, which the writer takes from the event loop the requests run on.
@functools.lru_cache(maxsize=4096)
def _parse_ip(value: str) -> str | None:
    try:
        # Zone ids ("fe80::1%eth0") are valid for Python but not for Postgres inet.
        return str(ipaddress.ip_address(value.split("%", 1)[0]))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _ip_packed(value: str) -> bytes | None:
    """The address in network byte order (4 or 16 bytes), or None when it is not one.

    Bytes, because asyncpg's `inet` encoder passes whatever it gets through
    `ipaddress.ip_address`: an address object or a string would be formatted and
    parsed again for every row, packed bytes are read directly.
    """
    try:
        return ipaddress.ip_address(value.split("%", 1)[0]).packed
    except ValueError:
        return None


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def audit_copy_row(record: AuditRecord) -> tuple[Any, ...]:
    """The `audit_log` row of one record as a tuple in `AUDIT_COLUMNS` order, with the
    values asyncpg's binary COPY encodes directly (packed bytes for `inet`)."""
    client_ip = record.client_ip
    return (
        clean_text(str(record.request_id), REQUEST_ID_MAX),
        utc(record.ts),
        record.tenant_id,
        record.key_id,
        clean_text(str(record.method), METHOD_MAX),
        clean_text(str(record.route), ROUTE_MAX),
        _optional_text(record.model, MODEL_MAX),
        _clamp(record.status_code, SMALLINT_MAX),
        record.outcome.value,
        _clamp(record.prompt_tokens, INT32_MAX),
        _clamp(record.completion_tokens, INT32_MAX),
        float(record.latency_ms),
        None if record.upstream_ms is None else float(record.upstream_ms),
        _ip_packed(client_ip) if client_ip else None,
        _optional_text(record.user_agent, USER_AGENT_MAX),
        _optional_text(record.client_request_id, REQUEST_ID_MAX),
        _optional_float(record.queue_ms),
    )


AUDIT_COLUMNS = (
    "request_id",
    "ts",
    "tenant_id",
    "key_id",
    "method",
    "route",
    "model",
    "status_code",
    "outcome",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "upstream_ms",
    "client_ip",
    "user_agent",
    "client_request_id",
    "queue_ms",
)


def audit_row(record: AuditRecord) -> dict[str, Any]:
    """The `audit_log` row of one record."""
    return {
        "request_id": clean_text(str(record.request_id), REQUEST_ID_MAX),
        "ts": utc(record.ts),
        "tenant_id": record.tenant_id,
        "key_id": record.key_id,
        "method": clean_text(str(record.method), METHOD_MAX),
        "route": clean_text(str(record.route), ROUTE_MAX),
        "model": _optional_text(record.model, MODEL_MAX),
        "status_code": _clamp(record.status_code, SMALLINT_MAX),
        "outcome": record.outcome,
        "prompt_tokens": _clamp(record.prompt_tokens, INT32_MAX),
        "completion_tokens": _clamp(record.completion_tokens, INT32_MAX),
        "latency_ms": float(record.latency_ms),
        "upstream_ms": None if record.upstream_ms is None else float(record.upstream_ms),
        "client_ip": clean_ip(record.client_ip),
        "user_agent": _optional_text(record.user_agent, USER_AGENT_MAX),
        "client_request_id": _optional_text(record.client_request_id, REQUEST_ID_MAX),
        "queue_ms": _optional_float(record.queue_ms),
    }


def request_json(body: Any) -> str:
    """The request body as JSON text jsonb accepts (orjson: NaN becomes null)."""
    try:
        text = orjson.dumps(body).decode()
    except (TypeError, orjson.JSONEncodeError):
        return UNSERIALIZABLE_REQUEST
    if "\\u0000" in text:
        text = _ESCAPED_NUL.sub(lambda match: match.group(1) + "\\ufffd", text)
    return text


def prompt_log_row(record: AuditRecord) -> dict[str, Any] | None:
    """The `prompt_logs` row of one record, or None if it has none (or names no key)."""
    log = record.prompt_log
    if log is None or record.tenant_id is None or record.key_id is None:
        return None
    return {
        "request_id": clean_text(str(record.request_id), REQUEST_ID_MAX),
        "tenant_id": record.tenant_id,
        "key_id": record.key_id,
        "ts": utc(record.ts),
        "expires_at": utc(log.expires_at),
        "request_json": request_json(log.request),
        "response": clean_text(str(log.response)),
    }


def usage_key(record: AuditRecord) -> UsageKey | None:
    """The `usage_daily` primary key a record adds to, or None if it is not usage."""
    if record.tenant_id is None or record.key_id is None:
        return None
    model = clean_text(record.model, MODEL_MAX) if record.model else ""
    return (utc(record.ts).date(), record.tenant_id, record.key_id, model)


def usage_rows(records: Iterable[AuditRecord]) -> list[dict[str, Any]]:
    """Per-batch sums for `usage_daily`, one row per (day, tenant, key, model).

    Sorted by primary key so concurrent replicas lock rows in the same order and cannot
    deadlock each other; aggregated because one INSERT ... ON CONFLICT may not touch
    the same row twice.
    """
    sums: dict[UsageKey, list[int]] = {}
    for record in records:
        key = usage_key(record)
        if key is None:
            continue
        entry = sums.setdefault(key, [0, 0, 0])
        entry[0] += 1
        entry[1] += max(0, int(record.prompt_tokens))
        entry[2] += max(0, int(record.completion_tokens))
    return [
        {
            "day": day,
            "tenant_id": tenant_id,
            "key_id": key_id,
            "model": model,
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        }
        for (day, tenant_id, key_id, model), (requests, prompt, completion) in sorted(sums.items())
    ]


def last_used_rows(records: Sequence[AuditRecord]) -> list[dict[str, Any]]:
    """The latest `ts` per key, sorted by key id (lock order, as for usage)."""
    latest: dict[uuid.UUID, datetime] = {}
    for record in records:
        if record.key_id is None:
            continue
        ts = utc(record.ts)
        if record.key_id not in latest or ts > latest[record.key_id]:
            latest[record.key_id] = ts
    return [{"b_key_id": key_id, "b_ts": ts} for key_id, ts in sorted(latest.items())]
