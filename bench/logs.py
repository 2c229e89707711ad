"""What the gateway processes logged as warnings and errors during the run.

A request can succeed for the client while the gateway complains (a settlement that
failed after the response was sent leaves a lease and a reservation to expire), so the
run counts these events per process log.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

LEVELS = frozenset({"warning", "error", "critical"})


def complaints(log: Path) -> dict[str, int]:
    """`event (error class)` -> count, for every warning or error line of `log`."""
    counts: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("level") not in LEVELS:
            continue
        error = record.get("error")
        counts[f"{record.get('event')} ({error})" if error else str(record.get("event"))] += 1
    return dict(counts.most_common())


def gateway_complaints(workdir: Path) -> dict[str, dict[str, int]]:
    """Per gateway process log in `workdir`: its warnings and errors."""
    return {log.stem: complaints(log) for log in sorted(workdir.glob("gateway*.log"))}
