"""Driving wrk: a Lua script per run (POST body, auth header), results read back as one
JSON line printed by the script's `done()`.

wrk runs for a duration, never for a request count (`thread:stop()` ends a thread's
loop, but wrk's main thread still sleeps out the duration), so callers that need a
count run it in slices.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.requests import Endpoint, Target

RESULT_MARK = "BENCH_JSON "

_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{auth}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p99_9_us":%d,"mean_us":%f,"max_us":%d}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # socket errors, timeouts and HTTP statuses >= 400
    non_2xx: int
    breakdown: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_9_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "error_kinds": {kind: n for kind, n in self.breakdown.items() if n},
            "latency_ms": {
                "p50": self.p50_ms,
                "p90": self.p90_ms,
                "p99": self.p99_ms,
                "p99_9": self.p99_9_ms,
                "mean": self.mean_ms,
                "max": self.max_ms,
            },
        }


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed (bench.tools.ensure_wrk installs it)")
    return found


def script(body: bytes, authorization: str | None) -> str:
    """The Lua script of one run."""
    auth = f'wrk.headers["Authorization"] = "{authorization}"' if authorization else ""
    return _SCRIPT.format(body=body.decode(), auth=auth, mark=RESULT_MARK)


def run(
    target: Target,
    endpoint: Endpoint,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
) -> WrkResult:
    """Load `target` with `connections` keep-alive connections for `seconds`."""
    lua = script(endpoint.body(stream=False), target.authorization)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(lua)
        path = Path(handle.name)
    try:
        completed = subprocess.run(
            [
                wrk_path(),
                f"-t{threads}",
                f"-c{max(connections, threads)}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(path),
                f"http://127.0.0.1:{target.port}{endpoint.path}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 120,
        )
    finally:
        path.unlink(missing_ok=True)
    return parse(completed.stdout)


def parse(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith(RESULT_MARK):
            data = json.loads(line.removeprefix(RESULT_MARK))
            break
    else:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    kinds = {name: int(data[name]) for name in ("connect", "read", "write", "status", "timeout")}
    errors = sum(kinds.values())
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        non_2xx=data["status"],
        breakdown=kinds,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p99_9_ms=data["p99_9_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )
