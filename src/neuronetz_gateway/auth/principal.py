"""The authenticated caller: who they are and the configuration that applies to them.

Loaded once per cache miss from Postgres and then held in memory, so the hot path reads
limits and grants from here without any I/O. Plain frozen data: stages receive it and
never mutate it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime


@dataclass(frozen=True, slots=True)
class LimitValues:
    """One subject's limits; None means "no limit" (tenant) or "inherit" (key, as stored)."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    total_tokens: int | None = None

    def inherit_from(self, tenant: LimitValues) -> LimitValues:
        """The key's effective limits: its own value, or the tenant's where its own is None."""
        return LimitValues(
            rpm=self.rpm if self.rpm is not None else tenant.rpm,
            tpm=self.tpm if self.tpm is not None else tenant.tpm,
            max_concurrent=(
                self.max_concurrent if self.max_concurrent is not None else tenant.max_concurrent
            ),
            daily_tokens=self.daily_tokens
            if self.daily_tokens is not None
            else tenant.daily_tokens,
            monthly_tokens=(
                self.monthly_tokens if self.monthly_tokens is not None else tenant.monthly_tokens
            ),
            total_tokens=self.total_tokens
            if self.total_tokens is not None
            else tenant.total_tokens,
        )

    @property
    def has_budget(self) -> bool:
        return (
            self.daily_tokens is not None
            or self.monthly_tokens is not None
            or self.total_tokens is not None
        )

    @property
    def is_unlimited(self) -> bool:
        return self == UNLIMITED


UNLIMITED = LimitValues()
MIN_WEIGHT, MAX_WEIGHT = 1, 100


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated key of an active tenant, with everything the pipeline needs."""

    tenant_id: uuid.UUID
    tenant_name: str
    key_id: uuid.UUID
    key_prefix: str
    key_expires_at: datetime | None = None
    # Limits as the tenant stores them, and the key's *effective* limits (inherited).
    tenant_limits: LimitValues = UNLIMITED
    key_limits: LimitValues = UNLIMITED
    # Model access (docs/REFERENCE.md §4.4).
    tenant_allow_all_models: bool = False
    tenant_grants: frozenset[str] = field(default_factory=frozenset)
    key_allow_all_models: bool | None = None
    key_grants: frozenset[str] = field(default_factory=frozenset)
    # Prompt logging (docs/REFERENCE.md §4.10).
    prompt_logging: bool = False
    prompt_log_ttl_hours: int | None = None
    # The tenant's usage is exported as metrics under its name (docs/REFERENCE.md §5).
    tenant_metrics: bool = False
    # The tenant's share of Ollama's slots while tenants wait (docs/SCHEDULING.md).
    tenant_weight: int = 1

    def requests_only(self) -> Principal:
        """This principal with its `rpm` limits alone: what a request that asks Ollama
        but runs no model (`/api/show`, `/api/ps`) is admitted under."""
        return replace(
            self,
            tenant_limits=LimitValues(rpm=self.tenant_limits.rpm),
            key_limits=LimitValues(rpm=self.key_limits.rpm),
        )
