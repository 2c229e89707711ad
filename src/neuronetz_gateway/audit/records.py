"""What the request pipeline hands to the audit writer: one record per request (REFERENCE.md §4.10).

Plain frozen data, built on the hot path and written later in batches; nothing here does
I/O. The values are taken as the pipeline observed them and cleaned up only when the
batch is written (see `audit.rows`), so building a record costs no more than a tuple.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from neuronetz_gateway.config import Settings
from neuronetz_gateway.outcome import Outcome


@dataclass(frozen=True, slots=True)
class PromptLogRecord:
    """The prompt and the answer of one request of a key with prompt logging on.

    `request` is the parsed JSON body; `response` the assembled response text, for
    streams what was actually sent (also when the client cancelled).
    """

    request: Any
    response: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One request as audited: one `audit_log` row, and usage for `usage_daily`.

    `ts` is timezone-aware UTC (a naive value is taken as UTC). `tenant_id`/`key_id` are
    None for requests refused before a key was identified; those rows count in
    `audit_log` only, never in `usage_daily`.
    """

    request_id: str
    ts: datetime
    tenant_id: uuid.UUID | None
    key_id: uuid.UUID | None
    method: str
    route: str
    model: str | None
    status_code: int
    outcome: Outcome
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    upstream_ms: float | None
    client_ip: str | None
    user_agent: str | None
    prompt_log: PromptLogRecord | None = None
    client_request_id: str | None = None  # the client's X-Request-ID; request_id is ours
    queue_ms: float | None = None  # waited for a slot; None: the request took none

    @property
    def counts_as_usage(self) -> bool:
        """Whether this record goes into `usage_daily` (it names a tenant and a key)."""
        return self.tenant_id is not None and self.key_id is not None

    @property
    def tokens(self) -> int:
        return max(0, self.prompt_tokens) + max(0, self.completion_tokens)


def prompt_log_expires_at(now: datetime, key_ttl_hours: int | None, settings: Settings) -> datetime:
    """When a prompt log written at `now` expires: the key's TTL, else the default."""
    if key_ttl_hours is not None and key_ttl_hours > 0:
        return now + timedelta(hours=key_ttl_hours)
    return now + timedelta(hours=settings.prompt_log_default_ttl_hours)
