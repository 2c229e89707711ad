"""Sampling the gateway with py-spy under load, and reading where the time goes.

py-spy writes collapsed stacks (`--format raw`: `frame;frame;... count` per line).
Samples of idle threads are left out by py-spy; the Argon2 thread pool's parked
workers are dropped here as well (they show up as `_worker` waiting on its queue).
From what is left: self time per function, inclusive time per function, and
inclusive time per package (each sample counted once per package on its stack).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Where a request's time goes, by the function that owns it (inclusive, so nested
# stages overlap). Settlement and the audit writer run in their own tasks.
STAGES = (
    ("ASGI app: middleware and pipeline", "RequestResponseCycle.run_asgi"),
    ("  authenticate", "Authenticator.authenticate"),
    ("  read and parse the body", "Pipeline._read_request"),
    ("  admission (limiter, Redis)", "ScriptLimiter.admit"),
    ("  forward and relay (aiohttp)", "Forwarder.forward"),
    ("  audit record, metrics, access log", "GatewayRuntime.record"),
    ("settlement (limiter, Redis)", "ScriptLimiter.settle"),
    ("Redis client (writes and replies)", "RespClient.execute_packed"),
    ("audit writer (Postgres)", "AuditWriter.run"),
    ("disconnect watcher", "_watch"),  # proxy/watched.py
)

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")
_PARKED = "concurrent/futures/thread.py:89"


def py_spy_path() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed (it is a dev dependency: uv sync)")
    return found


def record(
    pid: int, seconds: float, output: Path, *, rate: int = 250, raw: bool = True
) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds`; wait on the returned process.

    Blocking mode (py-spy pauses the process for each sample, ~1 % at 250 Hz here):
    non-blocking sampling reads stacks while they change and cut many of them short,
    which hid a third of the samples from their callers.
    """
    command = [
        py_spy_path(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(rate), "-o", str(output),
    ]  # fmt: skip
    if raw:
        command += ["--format", "raw"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (path/file.py)`: lines of one function merged."""
    match = _FRAME.match(frame)
    return f"{match['function']} ({match['file']})" if match else frame


def _package(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    return path.split("/", 1)[0] if "/" in path else path


def merge_lines(collapsed: str) -> str:
    """The same stacks with line numbers dropped and identical stacks summed."""
    merged: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if stack and count_text.isdigit():
            merged[";".join(_function(frame) for frame in stack.split(";"))] += int(count_text)
    return "".join(f"{stack} {count}\n" for stack, count in merged.most_common())


def analyse(collapsed: str, top: int = 30) -> dict[str, Any]:
    """Self, inclusive and per-package shares (% of busy samples) of collapsed stacks."""
    own: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    own_packages: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if _PARKED in frames[-1]:
            continue
        count = int(count_text)
        total += count
        functions = [_function(frame) for frame in frames]
        own[functions[-1]] += count
        own_packages[_package(frames[-1])] += count
        names = {function.split(" (", 1)[0] for function in functions}
        for label, name in STAGES:
            if name in names:
                stages[label] += count
        for function in set(functions):
            inclusive[function] += count
        for package in {_package(frame) for frame in frames}:
            packages[package] += count

    def shares(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, round(100.0 * n / total, 1)) for name, n in counter.most_common(limit)]

    if total == 0:
        return {"samples": 0}
    return {
        "samples": total,
        "stages": [(label, round(100.0 * stages[label] / total, 1)) for label, _ in STAGES],
        "self": shares(own, top),
        "inclusive": shares(inclusive, top * 2),
        "self_by_package": shares(own_packages, top),
        "inclusive_by_package": shares(packages, top),
    }
