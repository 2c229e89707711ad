"""What the run ran on, and how busy the machine was without us (noise check)."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("uvicorn", "granian", "uvloop", "httptools", "aiohttp", "redis", "fastapi")


def _cpu_times() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields), idle


def busy_share(seconds: float = 1.0) -> float:
    """The share of all CPUs busy over `seconds` (whoever uses them)."""
    total_before, idle_before = _cpu_times()
    time.sleep(seconds)
    total, idle = _cpu_times()
    elapsed = total - total_before
    return 1.0 - (idle - idle_before) / elapsed if elapsed else 0.0


def _own_cpu_seconds() -> float:
    """CPU used by this process and its children that have been waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuWindow:
    """How busy the machine was while the run ran, and how much of that was the run.

    What is neither the run's processes nor idle is Redis, Postgres and whatever else
    shares the machine (another developer's test suite makes every number noisy).
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.total, self.idle = _cpu_times()
        self.own = _own_cpu_seconds()

    def close(self) -> dict[str, float]:
        """Shares of all CPUs over the window; call after every child was waited for."""
        total, idle = _cpu_times()
        elapsed = total - self.total
        wall = time.monotonic() - self.started
        cpus = os.cpu_count() or 1
        busy = 1.0 - (idle - self.idle) / elapsed if elapsed else 0.0
        own = (_own_cpu_seconds() - self.own) / (wall * cpus) if wall else 0.0
        return {
            "wall_seconds": round(wall, 1),
            "machine_busy_share": round(busy, 3),
            "bench_processes_share": round(own, 3),
            "redis_postgres_and_others_share": round(max(0.0, busy - own), 3),
        }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _git_commit() -> str | None:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return completed.stdout.strip() or None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "commit": _git_commit(),
        "loadavg": os.getloadavg(),
    }
