"""Metrics across several worker processes (prometheus_client's multiprocess mode).

With `GATEWAY_WORKERS > 1` every worker counts on its own, and a scrape reaches just
one of them. In multiprocess mode each worker writes its values to memory-mapped files
in a shared directory and `/metrics` adds them up. The mode is chosen when
prometheus_client is first imported, from the environment variable
`PROMETHEUS_MULTIPROC_DIR`, so `serve` prepares the directory and exports the variable
before any worker starts (`metrics_directory`).

Gauges of processes that are gone would otherwise count forever (in-flight requests,
buffered audit rows): a worker removes its own at shutdown, and a worker starting up
removes those of workers that died without shutting down (`reap_dead_workers`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

from neuronetz_gateway.config import Settings

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


@contextlib.contextmanager
def metrics_directory(settings: Settings, workers: int) -> Iterator[Path | None]:
    """Set up multiprocess metrics for a server about to start `workers` processes.

    With `PROMETHEUS_MULTIPROC_DIR` configured, that directory is emptied of old values
    and used; otherwise, with more than one worker, a private directory is created and
    removed afterwards. With one worker and nothing configured, nothing changes.
    Must run before prometheus_client is imported by the serving process.
    """
    configured = settings.prometheus_multiproc_dir
    if configured is None and workers <= 1:
        yield None
        return
    if configured is not None:
        configured.mkdir(parents=True, exist_ok=True)
        for stale in configured.glob("*.db"):
            stale.unlink()
        directory, private = configured, False
    else:
        directory, private = Path(tempfile.mkdtemp(prefix="neuronetz-metrics-")), True
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous
        if private:
            shutil.rmtree(directory, ignore_errors=True)


def scrape_registry(settings: Settings) -> CollectorRegistry:
    """The registry `/metrics` renders: all workers' values, or this process's."""
    if settings.prometheus_multiproc_dir is None:
        return REGISTRY
    registry = CollectorRegistry()
    directory = str(settings.prometheus_multiproc_dir)
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]  # untyped upstream
    return registry


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def reap_dead_workers(settings: Settings) -> list[int]:
    """Drop the live gauges of worker processes that no longer exist; returns their pids."""
    directory = settings.prometheus_multiproc_dir
    if directory is None:
        return []
    matches = (_LIVE_GAUGE_FILE.fullmatch(f.name) for f in directory.glob("gauge_live*.db"))
    pids = {int(match.group(1)) for match in matches if match is not None}
    dead = sorted(pid for pid in pids if pid != os.getpid() and not _alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]  # untyped upstream
    return dead


def retire_this_worker(settings: Settings) -> None:
    """Drop this process's live gauges (it is shutting down)."""
    if settings.prometheus_multiproc_dir is not None:
        directory = str(settings.prometheus_multiproc_dir)
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]  # untyped upstream
