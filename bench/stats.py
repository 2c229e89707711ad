"""Percentiles and summaries of latency samples (nearest-rank, on sorted copies)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p90, p99, p99.9 and max of `values` (same unit as the input)."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[max(1, math.ceil(q / 100.0 * len(ordered))) - 1]

    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": at(50),
        "p90": at(90),
        "p99": at(99),
        "p99_9": at(99.9),
        "max": ordered[-1],
    }
