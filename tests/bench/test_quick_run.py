"""The harness end to end in its tiny mode, so it cannot rot between benchmark runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from neuronetz_gateway.db import migrate
from tests.support.databases import ADMIN_DATABASE_URL

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def run_bench(*arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m bench ARGUMENTS` from the project's root, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "bench", *arguments],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.timeout(180)
def test_quick_run_measures_every_scenario(tmp_path: Path) -> None:
    completed = run_bench("--quick", "--out", str(tmp_path), timeout=170)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "== targets ==" in completed.stdout
    results = json.loads((tmp_path / "latest.json").read_text())

    sequential = results["sequential"]["/api/chat"]
    assert {name: r["errors"] for name, r in sequential.items()} == {
        "direct": 0,
        "bare": 0,
        "gateway": 0,
        "gateway-nolimits": 0,
    }
    assert sequential["gateway"]["latency_ms"]["count"] == 100
    assert results["throughput"]["32"]["gateway"]["requests"] > 0
    assert results["throughput"]["32"]["gateway"]["errors"] == 0
    workers = results["workers"]
    assert workers["auto_workers"] >= 1
    for name in ("1", "auto"):
        assert workers[name]["rps"] > 0
        assert workers[name]["errors"] == 0
        assert workers[name]["cpu_us_per_request"] > 0
    streams = results["streams"]["gateway"]
    assert (streams["completed"], streams["failed"]) == (20, 0)
    assert streams["chunks"] == 20 * 11  # 10 content chunks and the final one, each stamped
    # The same streams over both SSE surfaces: what a relayed chunk costs on each.
    surfaces = results["streams"]["surfaces"]
    for path in ("/v1/chat/completions", "/v1/messages"):
        assert (surfaces[path]["completed"], surfaces[path]["failed"]) == (20, 0), path
        assert surfaces[path]["chunks"] == 20 * 11, path
        assert surfaces[path]["server_cpu_us_per_chunk"] > 0, path
    assert results["memory"]["idle_kib"] > 0
    counts = [reading["requests"] for reading in results["memory"]["after"].values()]
    assert counts[0] >= 300
    assert counts[1] >= 600
    flood = results["auth_flood"]
    assert flood["with_flood"]["statuses"].get("200", 0) > 0
    assert set(flood["flood"]["statuses"]) <= {"401", "503"}
    assert results["smuggling"]["uvicorn"]["two_content_lengths"]["verdict"] == "rejected"
    assert results["profile"]["samples"] > 0
    metrics = {check["metric"] for check in results["checks"]}
    assert {"idle RSS", "added TTFB p99", "gateway req/s"} <= metrics
    assert "CPU per chunk /v1/messages vs /v1/chat/completions" in metrics
    # The run cleans up after itself: its database is gone.
    assert results["meta"]["database"] not in asyncio.run(_database_names())


@pytest.mark.timeout(120)
def test_tracing_flag_measures_a_traced_gateway_beside_the_plain_one(tmp_path: Path) -> None:
    """`--tracing`: the coordinator's measure of what tracing costs per request."""
    arguments = ["--quick", "--only", "sequential", "--tracing", "--out", str(tmp_path)]
    completed = run_bench(*arguments, timeout=110)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "== tracing: gateway-traced minus gateway ==" in completed.stdout
    results = json.loads((tmp_path / "latest.json").read_text())
    for endpoint in ("/api/chat", "/v1/chat/completions"):
        traced = results["sequential"][endpoint]["gateway-traced"]
        assert traced["errors"] == 0
        assert traced["latency_ms"]["count"] == 100
        assert "cpu_us_per_request_added" in results["tracing"][endpoint]
    # The traced gateway really exported: the sink received span batches.
    assert results["tracing"]["sink"]["batches"] > 0
    assert results["tracing"]["sink"]["bytes"] > 0


@pytest.mark.timeout(120)
def test_gateway_env_reaches_the_gateway_and_the_results(tmp_path: Path) -> None:
    """`--gateway-env`: measuring an operator's setting. A failure budget of one
    verification lets exactly one of the flood's wrong keys reach Argon2 (401); the
    others are refused unverified (503)."""
    settings = ["AUTH_FAILURE_BURST=1", "AUTH_FAILURES_PER_SECOND=0.0001"]
    arguments = ["--quick", "--only", "flood", "--out", str(tmp_path)]
    for setting in settings:
        arguments += ["--gateway-env", setting]
    completed = run_bench(*arguments, timeout=110)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    statuses = results["auth_flood"]["flood"]["statuses"]
    assert statuses["401"] == 1
    assert statuses["503"] > 50
    assert results["meta"]["config"]["gateway_env"] == [s.split("=") for s in settings]


def test_a_gateway_env_without_a_value_is_refused() -> None:
    completed = run_bench("--gateway-env", "AUTH_FAILURE_BURST", timeout=60)
    assert completed.returncode == 2
    assert "--gateway-env wants NAME=VALUE" in completed.stderr


async def _database_names() -> set[str]:
    connection = await asyncpg.connect(migrate.asyncpg_dsn(ADMIN_DATABASE_URL))
    try:
        return {row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")}
    finally:
        await connection.close()
