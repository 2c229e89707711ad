"""Instructions and system calls per request: numbers that do not move with the machine.

    uv run python -m bench.instructions [--requests 200] [--warmup 100] [--slots 10000]

On this 2-vCPU virtual machine a process's CPU time per request moves by ±20 % from
one round to the next (other tenants of the host), so a change of a few per cent
cannot be seen in it. Two counts do not move (docs/PERFORMANCE.md):

- **instructions** executed in user space, counted by valgrind's callgrind: the bare
  proxy and the gateway (one worker, `OLLAMA_SLOTS` as the benchmark sets it) run under
  callgrind; after `--warmup` requests the counters are zeroed, `--requests` sequential
  requests per endpoint are sent, and the counters dumped. Repeatable to about 1-3 %
  (background work such as the audit writer's flushes falls into the window too);
- **system calls**, counted by `strace -c` attached to a natively running process over
  the same requests. The kernel's share of CPU time is not in the instruction count,
  and on a virtual machine a write to a socket costs as much as thousands of
  instructions.

Both are reported per request, and as the gateway's ratio to the bare proxy. Only the
gateway's and the proxy's public behaviour is used, so the same file measures any
version of the gateway (run it from the checkout to measure).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import fixtures, stack
from bench.config import FULL
from bench.processes import free_port, python_command
from bench.rawhttp import BlockingConnection, send_sequentially
from bench.requests import ENDPOINTS, Endpoint, Target

# Python under callgrind runs some 50 times slower: start-up (imports, the key's first
# Argon2 verification) takes a minute or more.
STARTUP_SECONDS = 900.0
# Background work after the last request (audit flush, deferred Redis writes) is let
# run before the counters are read, so each window holds its requests' whole cost.
SETTLE_SECONDS = 1.5

_TOTALS = re.compile(r"^(?:totals|summary):\s+(\d+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Counted:
    """One target's counts per request on one endpoint."""

    target: str
    endpoint: str
    instructions: float | None = None
    syscalls: float | None = None


def callgrind_total(text: str) -> int:
    """The instruction count of one callgrind dump (its `totals:` or `summary:` line)."""
    found = _TOTALS.search(text)
    if found is None:
        raise ValueError("no totals in the callgrind dump")
    return int(found.group(1))


def strace_total(text: str) -> int:
    """The number of calls of a `strace -c` summary (its `total` line)."""
    for line in text.splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], "total"
        if len(parts) >= 5 and parts[-1] == "total" and parts[3].isdigit():
            return int(parts[3])
    raise ValueError("no total in the strace summary")


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise SystemExit(f"{tool} is not installed (Debian package: {tool})")
    return found


def _start(
    command: Sequence[str], env: dict[str, str], log: Path, ready: Callable[[], bool]
) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(command), env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while not _safe(ready):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"{command[0]} did not start; see {log}")
        time.sleep(0.5)
    return process


def _safe(check: Callable[[], bool]) -> bool:
    with contextlib.suppress(OSError):
        return check()
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _send(target: Target, endpoint: Endpoint, count: int) -> None:
    """Send `count` requests one after another (slow under callgrind: a long timeout)."""
    request = target.request(endpoint)
    send_sequentially(target.port, request, count, name=target.name, timeout=120)


def _accepts(port: int) -> Callable[[], bool]:
    def check() -> bool:
        BlockingConnection(port, timeout=1.0).close()
        return True

    return check


@dataclass
class Stack:
    """The stub, and what the targets are started with."""

    workdir: Path
    stub_url: str
    database_url: str
    key: fixtures.BenchKey
    slots: str

    def gateway_env(self, port: int) -> dict[str, str]:
        env = stack.gateway_environment(self.database_url, FULL.redis_url, self.stub_url)
        return env | {
            "OLLAMA_SLOTS": self.slots,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "PYTHONHASHSEED": "0",
        }

    def bare_env(self) -> dict[str, str]:
        return stack.base_environment() | {"BENCH_UPSTREAM": self.stub_url, "PYTHONHASHSEED": "0"}

    @contextlib.contextmanager
    def target(self, name: str, wrapper: Sequence[str]) -> Iterator[tuple[Target, int]]:
        """`name` ('gateway' or 'bare') started under `wrapper` (callgrind, or nothing)."""
        port = free_port()
        if name == "gateway":
            command = python_command("-m", "neuronetz_gateway", "serve", "--skip-migrations")
            env = self.gateway_env(port)
            ready = stack._sees_models(port, self.key)
            target = Target(name, port, f"Bearer {self.key.secret}")
        else:
            command = stack._asgi_command(stack.Server.UVICORN, stack.BARE_FACTORY, port)
            env, ready, target = self.bare_env(), _accepts(port), Target(name, port)
        process = _start([*wrapper, *command], env, self.workdir / f"{name}.log", ready)
        try:
            yield target, process.pid
        finally:
            _stop(process)


def count_instructions(run: Stack, name: str, requests: int, warmup: int) -> list[Counted]:
    dumps = run.workdir / f"{name}.callgrind"
    wrapper = [
        _require("valgrind"), "--tool=callgrind", f"--callgrind-out-file={dumps}.%p",
        "--dump-instr=no", "--collect-jumps=no",
    ]  # fmt: skip
    control = _require("callgrind_control")
    counted = []
    with run.target(name, wrapper) as (target, pid):
        for endpoint in ENDPOINTS:
            _send(target, endpoint, warmup)
            time.sleep(SETTLE_SECONDS)
            subprocess.run([control, "--zero", str(pid)], check=True, capture_output=True)
            _send(target, endpoint, requests)
            time.sleep(SETTLE_SECONDS)
            before = set(run.workdir.glob(f"{dumps.name}.{pid}*"))
            subprocess.run([control, "--dump", str(pid)], check=True, capture_output=True)
            new = set(run.workdir.glob(f"{dumps.name}.{pid}*")) - before
            total = sum(callgrind_total(path.read_text(errors="replace")) for path in new)
            counted.append(Counted(name, endpoint.name, instructions=total / requests))
    return counted


def count_syscalls(run: Stack, name: str, requests: int, warmup: int) -> list[Counted]:
    strace = _require("strace")
    counted = []
    with run.target(name, []) as (target, pid):
        for endpoint in ENDPOINTS:
            _send(target, endpoint, warmup)
            summary = run.workdir / f"{name}-{endpoint.name.strip('/').replace('/', '_')}.strace"
            tracer = subprocess.Popen(
                [strace, "-c", "-f", "-p", str(pid), "-o", str(summary)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # strace attaches to every thread
            _send(target, endpoint, requests)
            time.sleep(SETTLE_SECONDS)
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
            calls = strace_total(summary.read_text())
            counted.append(Counted(name, endpoint.name, syscalls=calls / requests))
    return counted


def render(results: Sequence[Counted]) -> str:
    """A table: per endpoint and target, the counts per request and the gateway/bare ratio."""
    merged: dict[tuple[str, str], dict[str, float | None]] = {}
    for item in results:
        row = merged.setdefault((item.endpoint, item.target), {})
        if item.instructions is not None:
            row["instructions"] = item.instructions
        if item.syscalls is not None:
            row["syscalls"] = item.syscalls
    header = ("endpoint", "target", "k instr/req", "ratio", "syscalls/req", "ratio")
    lines = ["{:22} {:8} {:>12} {:>6} {:>13} {:>6}".format(*header)]
    for (endpoint, target), row in sorted(merged.items()):
        bare = merged.get((endpoint, "bare"), {})
        cells = []
        for metric, scale in (("instructions", 1000.0), ("syscalls", 1.0)):
            value, base = row.get(metric), bare.get(metric)
            cells.append(f"{value / scale:>12.1f}" if value is not None else f"{'-':>12}")
            cells.append(f"{value / base:>6.2f}" if value is not None and base else f"{'-':>6}")
        lines.append(f"{endpoint:22} {target:8} {cells[0]} {cells[1]} {cells[2]:>13} {cells[3]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200, help="measured requests per endpoint")
    parser.add_argument("--warmup", type=int, default=100, help="requests before measuring")
    parser.add_argument("--slots", default="10000", help="the gateway's OLLAMA_SLOTS")
    parser.add_argument("--no-syscalls", action="store_true", help="skip the strace count")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nzgw-instructions-"))
    database_url = fixtures.create_database(FULL.admin_database_url)
    stub = stack.start_stub(workdir, chunks=FULL.stream_chunks, interval_ms=0.0)
    try:
        key = fixtures.create_key(database_url)
        run = Stack(workdir, stub.base_url, database_url, key, args.slots)
        results: list[Counted] = []
        for name in ("bare", "gateway"):
            results += count_instructions(run, name, args.requests, args.warmup)
            if not args.no_syscalls:
                results += count_syscalls(run, name, args.requests, args.warmup)
        print(render(results))
        print(f"\nlogs and dumps: {workdir}")
        fixtures.delete_redis_keys(FULL.redis_url, key.tenant_id)
    finally:
        stub.stop()
        fixtures.drop_database(FULL.admin_database_url, database_url)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
