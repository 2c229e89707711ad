"""GATEWAY_WORKERS=auto (docs/REFERENCE.md §13): one worker per CPU the process may use,
its affinity capped by its cgroup's CPU quota; standalone mode stays one process."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from neuronetz_gateway.config import ConfigError
from neuronetz_gateway.workers import usable_cpus, worker_count
from tests.conftest import make_settings
from tests.support.databases import REDIS_URL
from tests.support.processes import GatewayProcess

CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def fake_proc(
    tmp_path: Path, *, cpus: str, cgroup: str, mountinfo: list[str], files: dict[str, str]
) -> Path:
    """A stand-in for /proc/self: status, cgroup, mountinfo, and cgroup files under tmp."""
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "status").write_text(f"Name:\tpython\nCpus_allowed_list:\t{cpus}\n")
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text("\n".join(line.format(root=tmp_path) for line in mountinfo))
    for relative, content in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return proc


V2_MOUNT = "30 23 0:26 / {root}/cg2 rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"
V1_MOUNT = "31 23 0:27 / {root}/cpu rw,nosuid - cgroup cgroup rw,cpu,cpuacct"


def test_a_container_limited_to_two_cpus_gets_two(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        cpus="0-63",
        cgroup="0::/kubepods/pod1/ctr\n",
        mountinfo=[V2_MOUNT],
        files={
            "cg2/cpu.max": "max 100000\n",
            "cg2/kubepods/pod1/ctr/cpu.max": "200000 100000\n",
        },
    )
    assert usable_cpus(proc) == 2


def test_a_fractional_quota_rounds_up_and_a_parent_quota_caps(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        cpus="0-15",
        cgroup="0::/slice/ctr\n",
        mountinfo=[V2_MOUNT],
        files={
            "cg2/slice/cpu.max": "350000 100000\n",  # 3.5 CPUs for the whole slice
            "cg2/slice/ctr/cpu.max": "max 100000\n",
        },
    )
    assert usable_cpus(proc) == 4


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        cpus="0-7",
        cgroup="4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n0::/\n",
        mountinfo=[V1_MOUNT],
        files={
            "cpu/docker/abc/cpu.cfs_quota_us": "150000\n",
            "cpu/docker/abc/cpu.cfs_period_us": "100000\n",
            "cpu/cpu.cfs_quota_us": "-1\n",
            "cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    assert usable_cpus(proc) == 2


def test_affinity_counts_when_smaller_than_the_quota(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        cpus="0-1,8,10-11",
        cgroup="0::/\n",
        mountinfo=[V2_MOUNT],
        files={"cg2/cpu.max": "1600000 100000\n"},
    )
    assert usable_cpus(proc) == 5


def test_no_quota_anywhere_means_the_affinity(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, cpus="0-2", cgroup="0::/\n", mountinfo=[], files={})
    assert usable_cpus(proc) == 3


def test_auto_is_the_default_with_postgres_and_redis(database_url: str) -> None:
    assert make_settings(database_url).gateway_workers is None
    assert worker_count(make_settings(database_url)) == len(os.sched_getaffinity(0))
    assert worker_count(make_settings(database_url, gateway_workers="auto")) == len(
        os.sched_getaffinity(0)
    )
    assert worker_count(make_settings(database_url, gateway_workers="3")) == 3


def test_standalone_stays_one_process(tmp_path: Path) -> None:
    for workers in (None, "auto"):
        standalone = make_settings("", redis_url="", data_dir=tmp_path, gateway_workers=workers)
        assert worker_count(standalone) == 1


@pytest.mark.parametrize("value", ["0", "65", "many", "1.5"])
def test_invalid_worker_setting_names_the_variable(database_url: str, value: str) -> None:
    with pytest.raises(ConfigError, match=r"^invalid configuration: GATEWAY_WORKERS: "):
        make_settings(database_url, gateway_workers=value)


# --- real processes ---------------------------------------------------------------------


@pytest.fixture
def one_cpu_cgroup() -> Iterator[Path]:
    """A real cgroup (v1 cpu controller) with a quota of one CPU, removed afterwards."""
    if not os.access(CGROUP_V1_CPU, os.W_OK) or not (CGROUP_V1_CPU / "cgroup.procs").exists():
        pytest.skip("no writable cgroup v1 cpu hierarchy here")
    group = CGROUP_V1_CPU / f"nzgw-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        yield group
    finally:
        group.rmdir()


def _workers_started(process: GatewayProcess, expected: int) -> set[str]:
    assert process.log.wait_for_count("Application startup complete", expected, 60)
    return set(re.findall(r"Started server process \[(\d+)\]", process.logs()))


def _gateway(
    database_url: str, preexec: Callable[[], None] | None = None, **env: str
) -> GatewayProcess:
    return GatewayProcess(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "OLLAMA_BASE_URL": "http://127.0.0.1:9",
            "MODEL_DISCOVERY_ENABLED": "false",
            **env,
        },
        args=("--skip-migrations",),
        preexec=preexec,
    )


def test_serve_starts_one_worker_per_cpu_by_default(database_url: str) -> None:
    expected = len(os.sched_getaffinity(0))
    with _gateway(database_url, GATEWAY_WORKERS="") as gateway:
        assert len(_workers_started(gateway, expected)) == expected
        assert ("Started parent process" in gateway.logs()) == (expected > 1)


def test_serve_in_a_one_cpu_cgroup_starts_one_worker(
    database_url: str, one_cpu_cgroup: Path
) -> None:
    def join() -> None:
        (one_cpu_cgroup / "cgroup.procs").write_text(str(os.getpid()))

    with _gateway(database_url, preexec=join, GATEWAY_WORKERS="auto") as gateway:
        assert len(_workers_started(gateway, 1)) == 1
        assert "Started parent process" not in gateway.logs()
