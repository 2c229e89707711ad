"""Multiprocess metrics: the directory `serve` prepares, and gauges of dead workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronetz_gateway.observability.multiprocess import (
    ENV_VAR,
    metrics_directory,
    reap_dead_workers,
    retire_this_worker,
)
from tests.conftest import make_settings


@pytest.fixture(autouse=True)
def _no_inherited_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_one_worker_needs_no_directory() -> None:
    with metrics_directory(make_settings("postgresql+asyncpg://x/y"), 1) as directory:
        assert directory is None
        assert ENV_VAR not in os.environ


def test_several_workers_get_a_private_directory_removed_afterwards() -> None:
    with metrics_directory(make_settings("postgresql+asyncpg://x/y"), 3) as directory:
        assert directory is not None
        assert directory.is_dir()
        assert os.environ[ENV_VAR] == str(directory)
    assert not directory.exists()
    assert ENV_VAR not in os.environ


def test_a_configured_directory_is_emptied_and_kept(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"old run")
    (tmp_path / "notes.txt").write_text("not ours")
    settings = make_settings("postgresql+asyncpg://x/y", prometheus_multiproc_dir=tmp_path)
    with metrics_directory(settings, 1) as directory:
        assert directory == tmp_path
        assert os.environ[ENV_VAR] == str(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert tmp_path.is_dir()


def test_empty_setting_means_none() -> None:
    settings = make_settings("postgresql+asyncpg://x/y", prometheus_multiproc_dir="")
    assert settings.prometheus_multiproc_dir is None


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


def test_live_gauges_of_dead_workers_are_dropped_counters_kept(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    files = [
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        f"gauge_livesum_{alive}.db",
    ]
    for name in files:
        (tmp_path / name).write_bytes(b"")
    settings = make_settings("postgresql+asyncpg://x/y", prometheus_multiproc_dir=tmp_path)
    assert reap_dead_workers(settings) == [dead]
    kept = {f"counter_{dead}.db", f"histogram_{dead}.db", f"gauge_livesum_{alive}.db"}
    assert {p.name for p in tmp_path.iterdir()} == kept

    retire_this_worker(settings)
    assert not (tmp_path / f"gauge_livesum_{alive}.db").exists()
