"""The Redis key layout of the limiter and the UTC budget periods the keys are named by.

Every key of one tenant carries the hash tag `{<tenant id>}`, so both scripts touch a
single Redis Cluster slot (docs/REFERENCE.md §4.5). Keys are built here and passed in `KEYS[]`;
the Lua scripts never build a key name.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from neuronetz_gateway.limits.types import BudgetPeriod

KEY_NAMESPACE = "nz:lim"
PERIODS: tuple[BudgetPeriod, BudgetPeriod, BudgetPeriod] = ("daily", "monthly", "total")

# Period counters live until their period ends plus this slack, so a request admitted
# just before midnight still finds its counter when it settles just after.
PERIOD_SLACK_MS = 3_600_000
# The total budget has no period: its counter slides, refreshed by every admission,
# and is rebuilt from Postgres once it has been idle this long.
TOTAL_COUNTER_TTL_MS = 8 * 86_400_000


@dataclass(frozen=True, slots=True)
class SubjectKeys:
    """The seven keys of one subject (a key or the tenant); order is the scripts' ABI."""

    rpm: str  # ZSET admission id -> admitted at (ms): the sliding request log
    tpm: str  # HASH epoch second -> tokens settled in that second
    live: str  # ZSET admission id -> lease expiry (ms): requests in flight
    reservations: str  # HASH admission id -> "tokens|gen daily|gen monthly|gen total"
    daily: str  # HASH used, resv, gen: budget counter of one UTC day
    monthly: str  # HASH used, resv, gen: budget counter of one UTC month
    total: str  # HASH used, resv, gen: budget counter of all time

    def as_tuple(self) -> tuple[str, ...]:
        return (
            self.rpm,
            self.tpm,
            self.live,
            self.reservations,
            self.daily,
            self.monthly,
            self.total,
        )


def subject_keys(tenant_id: uuid.UUID, key_id: uuid.UUID | None, period: Periods) -> SubjectKeys:
    """Keys of the key `key_id`, or of the whole tenant when `key_id` is None."""
    subject = "t" if key_id is None else f"k:{key_id}"
    base = f"{KEY_NAMESPACE}:{{{tenant_id}}}:{subject}"
    return SubjectKeys(
        rpm=f"{base}:rpm",
        tpm=f"{base}:tpm",
        live=f"{base}:live",
        reservations=f"{base}:resv",
        daily=f"{base}:bud:d:{period.day:%Y%m%d}",
        monthly=f"{base}:bud:m:{period.day:%Y%m}",
        total=f"{base}:bud:total",
    )


@dataclass(frozen=True, slots=True)
class Periods:
    """The UTC budget periods containing one instant (docs/REFERENCE.md §4.6)."""

    now: float
    day: date
    next_day: datetime
    next_month: datetime

    @classmethod
    def at(cls, now: float) -> Periods:
        moment = datetime.fromtimestamp(now, UTC)
        day = moment.date()
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return cls(
            now=now,
            day=day,
            next_day=datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC),
            next_month=datetime.combine(following, datetime.min.time(), UTC),
        )

    def since(self, period: BudgetPeriod) -> date | None:
        """First day whose usage counts towards `period`; None for all time."""
        if period == "daily":
            return self.day
        if period == "monthly":
            return self.day.replace(day=1)
        return None

    def resets_at(self, period: BudgetPeriod) -> datetime | None:
        """When `period`'s budget starts afresh; None for the total budget."""
        if period == "daily":
            return self.next_day
        if period == "monthly":
            return self.next_month
        return None

    def ms_until(self, moment: datetime) -> int:
        return max(1, math.ceil((moment.timestamp() - self.now) * 1000))

    def counter_ttls_ms(self) -> tuple[int, int, int]:
        """TTLs of the daily, monthly and total counters, relative to `now`."""
        return (
            self.ms_until(self.next_day) + PERIOD_SLACK_MS,
            self.ms_until(self.next_month) + PERIOD_SLACK_MS,
            TOTAL_COUNTER_TTL_MS,
        )
