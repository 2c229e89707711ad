"""Rate limits, concurrency leases and token budgets (docs/REFERENCE.md §4.5, §4.6).

The pipeline builds an `AdmissionRequest`, calls `Limiter.admit()` before proxying and
`Limiter.settle()` after the response; see docs/LIMITS.md for the algorithms.
"""

from neuronetz_gateway.limits.memory import MemoryLimiter
from neuronetz_gateway.limits.redis_limiter import RedisLimiter
from neuronetz_gateway.limits.types import (
    Admission,
    AdmissionRequest,
    BudgetPeriod,
    Limiter,
    LimiterUnavailable,
    RefusalReason,
    Refused,
    Scope,
    Ticket,
    estimate_prompt_tokens,
)
from neuronetz_gateway.limits.usage_source import PostgresUsageSource, UsageSource
from neuronetz_gateway.scripting.resp import RespClient, RespError

__all__ = [
    "Admission",
    "AdmissionRequest",
    "BudgetPeriod",
    "Limiter",
    "LimiterUnavailable",
    "MemoryLimiter",
    "PostgresUsageSource",
    "RedisLimiter",
    "RefusalReason",
    "Refused",
    "RespClient",
    "RespError",
    "Scope",
    "Ticket",
    "UsageSource",
    "estimate_prompt_tokens",
]
