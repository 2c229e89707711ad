"""How many worker processes `serve` starts (docs/REFERENCE.md §13).

`GATEWAY_WORKERS=auto`, the default with Postgres and Redis configured, means one worker
per CPU this process may use: the CPUs of its affinity mask, capped by the CPU quota of
its cgroup (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`; the smallest
on the way up to the root), rounded up. A container limited to 2 CPUs on a 64-core node
starts 2. Standalone mode keeps its limits in one process: always 1 there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

from neuronetz_gateway.config import Settings

PROC_SELF = Path("/proc/self")


def worker_count(settings: Settings) -> int:
    """The number of worker processes `GATEWAY_WORKERS` asks for."""
    configured = settings.gateway_workers
    if isinstance(configured, int):
        return configured
    if settings.standalone:
        return 1
    return usable_cpus()


def usable_cpus(proc: Path = PROC_SELF) -> int:
    """CPUs this process may use: its affinity, capped by every cgroup CPU quota above it.

    `proc` is `/proc/self`, or a stand-in directory with the same files in tests.
    """
    count = _affinity(proc)
    for quota in _cgroup_quotas(proc):
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _affinity(proc: Path) -> int:
    if proc == PROC_SELF:
        return len(os.sched_getaffinity(0))
    for line in (proc / "status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return _count_cpu_list(line.partition(":")[2].strip())
    return os.cpu_count() or 1


def _count_cpu_list(text: str) -> int:
    """`0-3,8,10-11` → 7."""
    total = 0
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        total += int(last or first) - int(first) + 1
    return total


def _cgroup_quotas(proc: Path) -> Iterator[float]:
    """Quotas, in CPUs, of the cgroups this process is in and of their parents."""
    for version, directory in _cgroup_directories(proc):
        quota = _read_quota(directory, version)
        if quota is not None:
            yield quota


def _cgroup_directories(proc: Path) -> Iterator[tuple[int, Path]]:
    """(cgroup version, directory) from this process's cgroup up to its hierarchy's root,
    for the hierarchies that hold the cpu controller (v2, or v1 mounted with `cpu`)."""
    paths: dict[str, str] = {}  # "v2" or "cpu" -> this process's path in that hierarchy
    for line in _lines(proc / "cgroup"):
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            paths["v2"] = path
        elif "cpu" in controllers.split(","):
            paths["cpu"] = path
    for line in _lines(proc / "mountinfo"):
        fields, _, tail = line.partition(" - ")
        parts, described = fields.split(), tail.split()
        if len(parts) < 5 or len(described) < 3:
            continue
        root, mount_point = parts[3], Path(parts[4])
        if described[0] == "cgroup2" and "v2" in paths:
            yield from ((2, d) for d in _up_to(mount_point, root, paths["v2"]))
        elif described[0] == "cgroup" and "cpu" in described[2].split(",") and "cpu" in paths:
            yield from ((1, d) for d in _up_to(mount_point, root, paths["cpu"]))


def _up_to(mount_point: Path, mount_root: str, process_path: str) -> list[Path]:
    """The process's cgroup directory under `mount_point`, then each parent up to it."""
    relative = os.path.relpath(process_path, mount_root)
    if relative.startswith(".."):
        return [mount_point]  # the process's own cgroup is outside this mount
    current = mount_point / relative if relative != "." else mount_point
    found = [current]
    while current != mount_point and current.parent != current:
        current = current.parent
        found.append(current)
    return found


def _read_quota(directory: Path, version: int) -> float | None:
    try:
        if version == 2:
            quota_text, period_text = (directory / "cpu.max").read_text().split()[:2]
            if quota_text == "max":
                return None
            quota, period = int(quota_text), int(period_text)
        else:
            quota = int((directory / "cpu.cfs_quota_us").read_text())
            period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []
