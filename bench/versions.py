"""CPU per request of several gateway versions, measured in the same window.

    uv run python -m bench.versions old=../old-checkout new=.:10000 [--rounds 10] [--requests 800]

A variant is `name=checkout[:slots]`: a checkout of the repository with its own
environment (`uv sync` in it), and the `OLLAMA_SLOTS` its gateway runs with (default
`--slots`). The same checkout may appear twice with different slots.

On this 2-vCPU virtual machine a process's CPU time per request moves by ±10-20 % from
one minute to the next (other tenants of the host), so two benchmark runs an hour apart
cannot show a change of a few per cent. Here every variant's gateway runs at once
against one stub, each from its own checkout with its own database (created and
migrated by that checkout's own `bench.fixtures`, so each schema is its own), and
rounds of sequential requests go to each in turn (the order rotating per round); a
round's CPU is the gateway process's on-CPU time (every thread, `/proc/<pid>/task/*/
schedstat`) over its requests; the added time is the client's wall time per request
less that of the same requests sent straight to the stub in the same round. With
`--connections N` a round is wrk with N connections for `--seconds` instead, and the
added time is wrk's p50 less the stub's. The
medians over the rounds are compared with the first variant's (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import stack, tools, wrk
from bench.config import FULL
from bench.fixtures import BenchKey
from bench.processes import Service, free_port
from bench.rawhttp import send_sequentially
from bench.requests import ENDPOINTS, Endpoint, Target

WARMUP_REQUESTS = 300
PAUSE_SECONDS = 0.3  # between rounds: background work of the last one settles

# Run with each checkout's own interpreter and code: its database and its key.
_CREATE = """
import json
from bench import fixtures
from bench.config import FULL
url = fixtures.create_database(FULL.admin_database_url)
key = fixtures.create_key(url)
print(json.dumps({"url": url, "secret": key.secret, "prefix": key.prefix,
                  "tenant": str(key.tenant_id)}))
"""
_DROP = """
import sys, uuid
from bench import fixtures
from bench.config import FULL
fixtures.delete_redis_keys(FULL.redis_url, uuid.UUID(sys.argv[2]))
fixtures.drop_database(FULL.admin_database_url, sys.argv[1])
"""


@dataclass(frozen=True, slots=True)
class Variant:
    """One gateway version to measure."""

    name: str
    checkout: Path
    slots: str

    @classmethod
    def parse(cls, text: str, default_slots: str) -> Variant:
        """`name=checkout[:slots]`."""
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise ValueError(f"a variant is name=checkout[:slots], not {text!r}")
        checkout, _, slots = rest.partition(":")
        return cls(name, Path(checkout).resolve(), slots or default_slots)

    @property
    def python(self) -> str:
        return str(self.checkout / ".venv" / "bin" / "python")


@dataclass
class Samples:
    """Per round: CPU (µs), client wall time (µs) and the time added over sending the
    same requests straight to the stub in that round (µs), per request."""

    cpu_us: list[float] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)
    added_us: list[float] = field(default_factory=list)


def process_cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of `pid` so far (ns)."""
    total = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(path.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended between the listing and the read
    return total


def summarize(
    samples: dict[tuple[str, str], Samples], names: Sequence[str]
) -> list[dict[str, object]]:
    """Per endpoint and variant: the medians and their change against `names[0]`."""
    rows: list[dict[str, object]] = []
    endpoints = sorted({endpoint for endpoint, _ in samples})
    for endpoint in endpoints:
        base = samples[(endpoint, names[0])]
        base_cpu, base_added = statistics.median(base.cpu_us), statistics.median(base.added_us)
        for name in names:
            got = samples[(endpoint, name)]
            cpu, added = statistics.median(got.cpu_us), statistics.median(got.added_us)
            rows.append(
                {
                    "endpoint": endpoint,
                    "variant": name,
                    "cpu_us_per_request": round(cpu, 1),
                    "cpu_change_percent": round(100 * (cpu / base_cpu - 1), 1),
                    "wall_us_per_request": round(statistics.median(got.wall_us), 1),
                    "added_us_per_request": round(added, 1),
                    "added_change_percent": round(100 * (added / base_added - 1), 1),
                    "cpu_us_rounds": [round(v, 1) for v in sorted(got.cpu_us)],
                }
            )
    return rows


def render(rows: Sequence[dict[str, object]], base: str) -> str:
    lines = [
        f"{'endpoint':22} {'variant':10} {'CPU µs/req':>10} {'vs ' + base:>10} "
        f"{'added µs/req':>12} {'vs ' + base:>10}"
    ]
    for row in rows:
        lines.append(
            f"{row['endpoint']!s:22} {row['variant']!s:10} {row['cpu_us_per_request']:>10} "
            f"{row['cpu_change_percent']:>+9}% {row['added_us_per_request']:>12} "
            f"{row['added_change_percent']:>+9}%"
        )
    return "\n".join(lines)


@contextmanager
def _gateway(variant: Variant, stub_url: str, workdir: Path) -> Iterator[tuple[Target, int]]:
    """`variant`'s gateway, serving from its checkout with a database of its own."""
    created = subprocess.run(
        [variant.python, "-c", _CREATE], cwd=variant.checkout, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    info = json.loads(created.stdout.strip().splitlines()[-1])
    try:
        key = BenchKey(info["secret"], info["prefix"], uuid.UUID(info["tenant"]))
        port = free_port()
        env = stack.gateway_environment(info["url"], FULL.redis_url, stub_url) | {
            "OLLAMA_SLOTS": variant.slots,
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "PYTHONHASHSEED": "0",
        }
        command = [variant.python, "-m", "neuronetz_gateway", "serve", "--skip-migrations"]
        service = Service(variant.name, command, port=port, workdir=workdir, env=env)
        service.start(stack._sees_models(port, key))
        try:
            yield Target(variant.name, port, f"Bearer {key.secret}"), service.pid
        finally:
            service.stop()
    finally:
        subprocess.run(
            [variant.python, "-c", _DROP, info["url"], info["tenant"]], cwd=variant.checkout,
            check=False,
        )  # fmt: skip


def _sequential(target: Target, endpoint: Endpoint, count: int) -> float:
    """Send `count` requests one after another; the client's wall time (s)."""
    request = target.request(endpoint)
    return send_sequentially(target.port, request, count, name=target.name, timeout=60)


@dataclass(frozen=True, slots=True)
class Load:
    """What a round sends: `requests` one after another (`connections` 1), or wrk with
    `connections` keep-alive connections for `seconds`."""

    requests: int = 800
    connections: int = 1
    seconds: float = 5.0

    def send(self, target: Target, endpoint: Endpoint) -> tuple[int, float]:
        """Requests answered, and µs per request: the mean for sequential requests, the
        p50 latency under wrk."""
        if self.connections == 1:
            wall = _sequential(target, endpoint, self.requests)
            return self.requests, wall / self.requests * 1e6
        result = wrk.run(target, endpoint, connections=self.connections, seconds=self.seconds)
        if result.errors:
            raise RuntimeError(f"{target.name}: {result.errors} errors under wrk")
        return result.requests, result.p50_ms * 1000


def measure(
    variants: Sequence[Variant], *, rounds: int, load: Load, warmup: int = WARMUP_REQUESTS
) -> dict[tuple[str, str], Samples]:
    """Rounds of `load` per endpoint to each variant, in turn."""
    workdir = Path(tempfile.mkdtemp(prefix="nzgw-versions-"))
    stub = stack.start_stub(workdir, chunks=FULL.stream_chunks, interval_ms=0.0)
    endpoints = list(ENDPOINTS)
    samples = {(e.name, v.name): Samples() for e in endpoints for v in variants}
    straight = Target("direct", stub.port)
    try:
        with ExitStack() as running:
            gateways = [
                running.enter_context(_gateway(v, stub.base_url, workdir)) for v in variants
            ]
            for target, _ in gateways:
                for endpoint in endpoints:
                    _sequential(target, endpoint, warmup)
            for number in range(rounds):
                shift = number % len(gateways)
                order = gateways[shift:] + gateways[:shift]
                for endpoint in endpoints:
                    _, direct = load.send(straight, endpoint)
                    for target, pid in order:
                        time.sleep(PAUSE_SECONDS)
                        before = process_cpu_ns(pid)
                        answered, wall = load.send(target, endpoint)
                        spent = process_cpu_ns(pid) - before
                        got = samples[(endpoint.name, target.name)]
                        got.cpu_us.append(spent / answered / 1000)
                        got.wall_us.append(wall)
                        got.added_us.append(wall - direct)
    finally:
        stub.stop()
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("variants", nargs="+", help="name=checkout[:slots]; the first is the base")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=800, help="per round and endpoint")
    parser.add_argument(
        "--connections", type=int, default=1, help="above 1: wrk with this many connections"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="of wrk per round")
    parser.add_argument("--slots", default="10000", help="OLLAMA_SLOTS unless a variant says")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    variants = [Variant.parse(text, args.slots) for text in args.variants]
    if len({v.name for v in variants}) != len(variants):
        parser.error("variant names must differ")
    load = Load(args.requests, args.connections, args.seconds)
    if load.connections > 1:
        tools.ensure_wrk()
    samples = measure(variants, rounds=args.rounds, load=load)
    rows = summarize(samples, [v.name for v in variants])
    print(render(rows, variants[0].name))
    if args.json is not None:
        settings = {"rounds": args.rounds, "requests": args.requests,
                    "connections": args.connections, "seconds": args.seconds}  # fmt: skip
        args.json.write_text(json.dumps({"rows": rows, **settings}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
