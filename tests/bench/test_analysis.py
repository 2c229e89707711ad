"""The harness's pure parts: wrk output, profiles, percentiles, target checks, probes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import logs, profiling, report, wrk
from bench.scenarios import flood, smuggling
from bench.stats import percentile, summary
from neuronetz_gateway.auth.keys import is_well_formed


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert math.isnan(percentile([], 50))
    assert summary([3.0, 1.0, 2.0])["p50"] == 2.0


def test_wrk_result_line_is_parsed() -> None:
    output = (
        "Running 1s test\n"
        'BENCH_JSON {"requests":2000,"duration_us":1000000,"bytes":1,"connect":0,"read":1,'
        '"write":0,"status":2,"timeout":0,"p50_us":1500,"p90_us":2000,"p99_us":4000,'
        '"p99_9_us":5000,"mean_us":1600.5,"max_us":9000}\n'
    )
    result = wrk.parse(output)
    assert (result.rps, result.errors, result.non_2xx, result.p99_ms) == (2000.0, 3, 2, 4.0)


def test_wrk_without_result_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no result"):
        wrk.parse("unable to connect\n")


def test_profile_shares_count_each_sample_once_per_function() -> None:
    collapsed = "\n".join(
        [
            "main (app.py:1);handle (pipeline.py:10);admit (limiter.py:5) 6",
            "main (app.py:1);handle (pipeline.py:12);handle (pipeline.py:14) 2",
            "main (app.py:1);loop (asyncio/events.py:3) 2",
            "_worker (concurrent/futures/thread.py:89) 50",  # a parked thread: dropped
        ]
    )
    analysis = profiling.analyse(collapsed)
    assert analysis["samples"] == 10
    assert dict(analysis["self"]) == {
        "admit (limiter.py)": 60.0,
        "handle (pipeline.py)": 20.0,
        "loop (asyncio/events.py)": 20.0,
    }
    inclusive = dict(analysis["inclusive"])
    assert (inclusive["main (app.py)"], inclusive["handle (pipeline.py)"]) == (100.0, 80.0)
    assert dict(analysis["inclusive_by_package"])["asyncio"] == 20.0


def test_targets_are_judged_against_the_direct_baseline() -> None:
    def latency(p50: float, p99: float) -> dict[str, object]:
        return {"latency_ms": {"p50": p50, "p99": p99}, "errors": 0}

    results = {
        "sequential": {"/api/chat": {"direct": latency(0.1, 0.5), "gateway": latency(0.9, 4.0)}},
        "auth_flood": {
            "without_flood": {"latency_ms": {"p99": 2.0}},
            "with_flood": {"latency_ms": {"p99": 3.0}},
        },
    }
    checks = {check.metric: check for check in report.evaluate(results)}
    assert checks["/api/chat added p50"].passed is True
    assert checks["/api/chat added p99"].passed is False
    assert checks["/api/chat added p99"].measured == pytest.approx(3.5)
    assert checks["legit p99 with / without"].measured == pytest.approx(1.5)


def test_flood_keys_are_well_formed_and_wrong() -> None:
    existing = flood.wrong_key("nz_abcdefgh")
    invented = flood.wrong_key(None)
    assert is_well_formed(existing)
    assert is_well_formed(invented)
    assert existing.startswith("nz_abcdefgh")
    assert existing != flood.wrong_key("nz_abcdefgh")


@pytest.mark.parametrize(
    ("statuses", "closed", "verdict"),
    [
        ([400], True, "rejected"),
        ([401], True, "closed"),
        ([401, 200], False, "smuggled"),
        ([401], False, "accepted"),
        ([], True, "closed"),
    ],
)
def test_smuggling_verdicts(statuses: list[int], closed: bool, verdict: str) -> None:
    assert smuggling._verdict(statuses, closed) == verdict


def test_collapsed_stacks_merge_to_functions() -> None:
    collapsed = "main (app.py:1);admit (limiter.py:5) 6\nmain (app.py:2);admit (limiter.py:9) 4\n"
    assert profiling.merge_lines(collapsed) == "main (app.py);admit (limiter.py) 10\n"


def test_profile_stages_name_the_gateway_functions() -> None:
    collapsed = (
        "run (r.py:1);RequestResponseCycle.run_asgi (u.py:2);ScriptLimiter.admit (l.py:3) 3\n"
        "run (r.py:1);ScriptLimiter.settle (l.py:9) 1\n"
    )
    stages = dict(profiling.analyse(collapsed)["stages"])
    assert stages["ASGI app: middleware and pipeline"] == 75.0
    assert stages["  admission (limiter, Redis)"] == 75.0
    assert stages["settlement (limiter, Redis)"] == 25.0
    assert stages["  authenticate"] == 0.0


def test_every_profile_stage_names_a_function_that_exists() -> None:
    """A renamed function would silently turn its stage into 0 % of the profile."""
    import uvicorn.protocols.http.httptools_impl as uvicorn_http

    import neuronetz_gateway

    package = Path(neuronetz_gateway.__file__).parent
    sources = [p.read_text() for p in package.rglob("*.py")]
    sources.append(Path(uvicorn_http.__file__).read_text())
    for label, qualified in profiling.STAGES:
        owner, _, function = qualified.rpartition(".")
        defined = [
            source
            for source in sources
            if f"def {function}(" in source and (not owner or f"class {owner}" in source)
        ]
        assert defined, f"{label}: no {qualified} in the gateway (or uvicorn)"


def test_gateway_log_complaints_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "gateway-uvicorn.log"
    log.write_text(
        '{"event":"limiter_unavailable","error":"MaxConnectionsError","level":"error"}\n'
        '{"event":"limiter_unavailable","error":"MaxConnectionsError","level":"error"}\n'
        '{"event":"gateway_started","level":"info"}\n'
        "not json\n"
        '{"event":"settlement_failed","level":"warning"}\n'
    )
    assert logs.gateway_complaints(tmp_path) == {
        "gateway-uvicorn": {
            "limiter_unavailable (MaxConnectionsError)": 2,
            "settlement_failed": 1,
        }
    }
