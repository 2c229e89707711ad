"""The admission/settlement contract (docs/REFERENCE.md §4.5, §4.6) the request pipeline speaks.

A request is admitted (rate limits, concurrency lease, budget reservation in one step)
or refused; an admitted request is settled exactly once after its response, and a
stream refreshes its lease while it runs. Implementations: `RedisLimiter` (shared by
every replica) and `MemoryLimiter` (one process, standalone mode).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from neuronetz_gateway.auth.principal import LimitValues

RefusalReason = Literal["rpm", "tpm", "concurrency", "budget"]
Scope = Literal["key", "tenant"]
BudgetPeriod = Literal["daily", "monthly", "total"]

PROMPT_BYTES_PER_TOKEN = 3


def estimate_prompt_tokens(text_bytes: int) -> int:
    """docs/REFERENCE.md §4.6's prompt estimate: request text bytes / 3, rounded up."""
    return -(-max(0, text_bytes) // PROMPT_BYTES_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """Everything admission needs about one request; plain data, no I/O."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID
    request_id: str
    tenant_limits: LimitValues  # the tenant's own values (None = unlimited)
    key_limits: LimitValues  # the key's effective values (inherited from the tenant)
    prompt_estimate: int  # estimate_prompt_tokens(request text bytes)
    client_output_cap: int | None  # num_predict / max_tokens; values < 1 mean "no cap"
    produces_output: bool = True  # False for embeddings: reserve the prompt estimate only
    now: float | None = None  # injectable clock (epoch seconds); None = the Redis clock


@dataclass(frozen=True, slots=True)
class SubjectPlan:
    """Which Redis structures of one subject (the key or the tenant) a request uses."""

    scope: Scope
    keys: tuple[str, ...]  # the subject's seven keys, in `limits.keys.SubjectKeys` order
    tpm: bool
    live: bool  # holds a lease: concurrency limit or budget reservation
    budgets: tuple[bool, bool, bool]  # daily, monthly, total


@dataclass(slots=True)
class Ticket:
    """What settle() and refresh() need; the fast-path ticket has no subjects at all."""

    admission_id: str
    request_id: str
    tenant_id: uuid.UUID
    subjects: tuple[SubjectPlan, ...] = ()
    keys: tuple[str, ...] = ()  # every subject's keys, in order (what settle passes)
    reserved_tokens: int = 0
    lease_seconds: int = 0
    state_ttl_ms: int = 0
    settled: bool = field(default=False, compare=False)

    @property
    def is_noop(self) -> bool:
        """True when nothing is limited: settle and refresh touch no counter."""
        return not self.subjects

    @property
    def holds_lease(self) -> bool:
        """True when a stream must call refresh() every `refresh_interval` seconds."""
        return any(subject.live for subject in self.subjects)

    @property
    def refresh_interval(self) -> float:
        """How often a stream should refresh its lease: a third of the lease."""
        return self.lease_seconds / 3 if self.lease_seconds else 0.0


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: its ticket, the output cap to send upstream, headers."""

    ticket: Ticket
    # Set when a budget applies: min(client cap, BUDGET_DEFAULT_MAX_OUTPUT_TOKENS,
    # headroom - prompt estimate). None leaves the client's cap alone.
    output_cap: int | None
    headers: dict[str, str]


class Refused(Exception):
    """The request is refused (429): a rate limit, the concurrency limit or a budget."""

    def __init__(
        self,
        *,
        reason: RefusalReason,
        scope: Scope,
        retry_after: int,
        headers: dict[str, str],
        message: str,
        budget_period: BudgetPeriod | None = None,
        resets_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: RefusalReason = reason
        self.scope: Scope = scope
        self.retry_after = retry_after
        self.headers = headers
        self.message = message
        self.budget_period: BudgetPeriod | None = budget_period
        self.resets_at = resets_at


class LimiterUnavailable(Exception):
    """The limiter cannot decide (Redis unreachable, a counter not rebuildable): 503."""


class Limiter(Protocol):
    """Admission and settlement of docs/REFERENCE.md §4.5/§4.6, shared by every replica."""

    async def admit(self, request: AdmissionRequest) -> Admission:
        """Admit the request or raise `Refused`; `LimiterUnavailable` fails closed."""
        ...

    async def settle(
        self,
        ticket: Ticket,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        now: float | None = None,
    ) -> None:
        """Release the lease and replace the reservation with the real token count."""
        ...

    async def refresh(self, ticket: Ticket, *, now: float | None = None) -> None:
        """Keep a running stream's lease (and budget reservation) alive."""
        ...
