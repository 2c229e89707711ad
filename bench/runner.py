"""One benchmark run from start to end: set up, every scenario in order, clean up.

Order matters and is fixed: the stub is measured direct first (it must not be the
bottleneck); the uvicorn gateway then serves scenarios 1, 2, the profile, 3, 5 and
the smuggling probes; a fresh gateway process serves the memory scenario (a leak
check on a process that already held 500 streams would measure the allocator's
high-water mark, not a leak); the granian servers come last.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench import fixtures, logs, machine, profiling, stack, stream_runs, tools, wrk
from bench.config import BenchConfig
from bench.processes import Service, rss_kib
from bench.requests import NATIVE_CHAT, Target
from bench.scenarios import (
    flood,
    memory,
    queue,
    sequential,
    smuggling,
    throughput,
    transport,
    workers,
)
from bench.stack import Server
from neuronetz_gateway.workers import usable_cpus

BUSY_WARNING = 0.15


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed[T](label: str, work: Callable[[], T]) -> T:
    started = time.monotonic()
    say(f"-- {label} ...")
    result = work()
    say(f"   {label}: {time.monotonic() - started:.1f} s")
    return result


class Run:
    def __init__(self, config: BenchConfig, stack_: ExitStack, workdir: Path) -> None:
        self.config = config
        self.exit = stack_
        self.workdir = workdir
        self.results: dict[str, Any] = {}
        self.database_url = ""
        self.key: fixtures.BenchKey | None = None
        self.free_key: fixtures.BenchKey | None = None
        self.sink: Service | None = None

    # -- set-up -------------------------------------------------------------------------

    def service(self, service: Service) -> Service:
        self.exit.callback(service.stop)
        return service

    def prepare(self) -> None:
        config = self.config
        self.database_url = fixtures.create_database(config.admin_database_url)
        self.results["meta"]["database"] = make_url(self.database_url).database
        self.exit.callback(fixtures.drop_database, config.admin_database_url, self.database_url)
        self.key = fixtures.create_key(self.database_url)
        self.exit.callback(fixtures.delete_redis_keys, config.redis_url, self.key.tenant_id)
        self.free_key = fixtures.create_key(self.database_url, limited=False)

    def gateway(
        self,
        upstream: str,
        server: Server = Server.UVICORN,
        name: str = "gateway",
        workers: str = "1",
        slots: str | None = None,
    ) -> Service:
        assert self.key is not None
        env = self.environment(upstream)
        env["GATEWAY_WORKERS"] = workers
        if slots is not None:
            env["OLLAMA_SLOTS"] = slots
        return self.service(stack.start_gateway(self.workdir, env, self.key, server, name))

    def environment(self, upstream: str) -> dict[str, str]:
        """A gateway's environment: the production defaults, then `--gateway-env`."""
        env = stack.gateway_environment(self.database_url, self.config.redis_url, upstream)
        return env | dict(self.config.gateway_env)

    def gateway_target(self, service: Service, name: str = "gateway") -> Target:
        assert self.key is not None
        return Target(name, service.port, f"Bearer {self.key.secret}", service.pid)

    def unlimited_target(self, service: Service) -> Target:
        """The same gateway with a key that has no limits: no Redis on its path."""
        assert self.free_key is not None
        authorization = f"Bearer {self.free_key.secret}"
        return Target("gateway-nolimits", service.port, authorization, service.pid)

    # -- the run ------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        config = self.config
        self.results["meta"] = machine.describe() | {
            "quick": config.quick,
            "config": {k: v for k, v in vars(config).items() if k not in ("out_dir",)},
            "busy_share_before": round(machine.busy_share(0.2 if config.quick else 1.0), 3),
        }
        busy = self.results["meta"]["busy_share_before"]
        if busy > BUSY_WARNING:
            say(f"warning: the machine is {busy:.0%} busy before the run: results will be noisy")
        timed("database, tenant, key", self.prepare)
        stub = self.service(
            stack.start_stub(
                self.workdir, chunks=config.stream_chunks, interval_ms=config.stream_interval_ms
            )
        )
        direct = Target("direct", stub.port, pid=stub.pid)
        self.results["stub_check"] = timed(
            "stub direct (capacity check)",
            lambda: wrk.run(
                direct, NATIVE_CHAT, connections=32, seconds=max(1.0, config.wrk_seconds / 2)
            ).as_dict(),
        )
        bare_service = self.service(stack.start_bare(self.workdir, stub.base_url))
        gateway_service = self.gateway(stub.base_url)
        bare = Target("bare", bare_service.port, pid=bare_service.pid)
        gateway = self.gateway_target(gateway_service)
        targets = [direct, bare, gateway, self.unlimited_target(gateway_service)]
        traced = self._traced_gateway(stub) if config.tracing else None
        if traced is not None:
            targets.append(traced)
        self._sequential_and_throughput(targets, self.results)
        if traced is not None:
            self.results["tracing"] = self._tracing_summary()
        if config.runs("workers"):
            self.results["workers"] = timed(
                "workers (1 vs auto)", lambda: self._workers(stub, gateway)
            )
        if config.runs("profile"):
            self.results["profile"] = timed(
                "profile", lambda: self._profile(gateway_service, gateway)
            )
        if config.runs("streams"):
            self.results["streams"] = timed(
                "streams", lambda: stream_runs.run(self, stub, bare_service)
            )
        assert self.key is not None
        prefix = self.key.prefix
        if config.runs("flood"):
            self.results["auth_flood"] = timed(
                "auth flood",
                lambda: flood.run(
                    gateway,
                    prefix,
                    legit_rate=config.legit_rate,
                    flood_rate=config.flood_rate,
                    seconds=config.flood_seconds,
                ),
            )
        if config.runs("smuggling"):
            self.results["smuggling"] = {"uvicorn": smuggling.run(gateway_service.port)}
        if config.runs("transport"):
            self.results["transport"] = timed(
                "transport limits", lambda: self._transport(gateway_service)
            )
        if config.runs("queue"):
            self.results["queue"] = timed("queue (contended)", self._queue)
        if config.granian:
            timed("granian", lambda: self._granian(stub, direct, bare, gateway))
        gateway_service.stop()
        bare_service.stop()
        if config.runs("memory"):
            self.results["memory"] = timed("memory", lambda: self._memory(stub))
        return self.results

    def _transport(self, gateway: Service) -> dict[str, Any]:
        config = self.config
        return {
            "cost_us_per_request": transport.cost(config.transport_cost_requests),
            "attack": transport.attack(
                gateway.port,
                gateway.pid,
                slowloris=config.transport_slowloris,
                seconds=config.transport_attack_seconds,
            ),
        }

    def _sequential_and_throughput(self, targets: list[Target], into: dict[str, Any]) -> None:
        config = self.config
        if config.runs("sequential"):
            into["sequential"] = timed(
                "sequential",
                lambda: sequential.run(
                    targets, count=config.sequential_count, warmup=config.sequential_warmup
                ),
            )
        if config.runs("throughput"):
            into["throughput"] = timed(
                "throughput (wrk)",
                lambda: throughput.run(
                    targets,
                    connection_counts=config.connection_counts,
                    seconds=config.wrk_seconds,
                    warmup_seconds=config.wrk_warmup_seconds,
                ),
            )

    def _queue(self) -> dict[str, Any]:
        """Scenario 10: a slow stub behind a gateway with few slots, and one without."""
        config = self.config
        stub = self.service(
            stack.start_stub(
                self.workdir, chunks=config.queue_chunks, interval_ms=config.queue_interval_ms
            )
        )
        queued = self.gateway(stub.base_url, name="gateway-queued", slots=str(config.queue_slots))
        unqueued = self.gateway(stub.base_url, name="gateway-unqueued", slots="0")
        try:
            return queue.run(
                self.gateway_target(queued, "gateway-queued"),
                self.gateway_target(unqueued, "gateway-unqueued"),
                config.redis_url,
                clients=config.queue_clients,
                seconds=config.queue_seconds,
                slots=config.queue_slots,
            )
        finally:
            queued.stop()
            unqueued.stop()
            stub.stop()

    def _traced_gateway(self, stub: Service) -> Target:
        """`--tracing`: the same gateway with tracing on, exporting to a local sink."""
        assert self.key is not None
        self.sink = self.service(stack.start_otlp_sink(self.workdir))
        env = self.environment(stub.base_url) | stack.tracing_environment(self.sink)
        name = "gateway-traced"
        service = self.service(stack.start_gateway(self.workdir, env, self.key, name=name))
        return self.gateway_target(service, name)

    def _tracing_summary(self) -> dict[str, Any]:
        """What the sink received, and the traced gateway's CPU and p50 per request
        against the untraced one's, per sequential endpoint."""
        assert self.sink is not None
        stats_url = f"{self.sink.base_url}/stats"
        with urllib.request.urlopen(stats_url, timeout=5) as answer:  # noqa: S310 - loopback sink
            summary: dict[str, Any] = {"sink": json.loads(answer.read())}
        for endpoint, per_target in self.results.get("sequential", {}).items():
            plain, traced = per_target["gateway"], per_target["gateway-traced"]
            summary[endpoint] = {
                "cpu_us_per_request_added": _difference(
                    traced.get("cpu_us_per_request"), plain.get("cpu_us_per_request")
                ),
                "p50_ms_added": _difference(
                    traced["latency_ms"]["p50"], plain["latency_ms"]["p50"]
                ),
            }
        return summary

    def _workers(self, stub: Service, single: Target) -> dict[str, Any]:
        """Scenario 6: the one-worker gateway against one with GATEWAY_WORKERS=auto."""
        config = self.config
        service = self.gateway(stub.base_url, name="gateway-auto", workers="auto")
        try:
            return workers.run(
                single,
                self.gateway_target(service, "gateway-auto"),
                auto_workers=usable_cpus(),
                connections=32,
                seconds=config.wrk_seconds,
                warmup_seconds=max(config.wrk_warmup_seconds, 1.0),
                rounds=config.worker_rounds,
            )
        finally:
            service.stop()

    def _profile(self, service: Service, target: Target) -> dict[str, Any]:
        """py-spy on the gateway while wrk holds 32 connections (not a measured run)."""
        seconds = self.config.profile_seconds
        output = self.config.out_dir / "profile-raw.txt"
        output.parent.mkdir(parents=True, exist_ok=True)
        sampler = profiling.record(service.pid, seconds, output)
        load = wrk.run(target, NATIVE_CHAT, connections=32, seconds=seconds + 1)
        sampler.wait(timeout=seconds + 60)
        if not output.exists():
            return {"samples": 0}
        collapsed = output.read_text()
        # Kept per function, not per line: a twentieth of the size, still a flame graph.
        output.write_text(profiling.merge_lines(collapsed))
        analysis = profiling.analyse(collapsed)
        return analysis | {"rps_while_sampled": round(load.rps, 1), "collapsed": output.name}

    def _memory(self, stub: Service) -> dict[str, Any]:
        service = self.gateway(stub.base_url, name="gateway-memory")
        try:
            startup = rss_kib(service.pid)
            readings = memory.run(
                service.pid,
                self.gateway_target(service),
                self.config.memory_checkpoints,
                self.config.settle_seconds,
            )
            return readings | {"startup_kib": startup}
        finally:
            service.stop()

    def _granian(self, stub: Service, direct: Target, bare: Target, gateway: Target) -> None:
        """Scenarios 1-2 on both servers in the same time window: the uvicorn processes
        are still up, targets alternate, so the neighbours' load hits both alike."""
        bare_service = self.service(stack.start_bare(self.workdir, stub.base_url, Server.GRANIAN))
        gateway_service = self.gateway(stub.base_url, Server.GRANIAN)
        targets = [
            direct,
            replace(bare, name="bare@uvicorn"),
            Target("bare@granian", bare_service.port, pid=bare_service.pid),
            replace(gateway, name="gateway@uvicorn"),
            self.gateway_target(gateway_service, "gateway@granian"),
        ]
        granian: dict[str, Any] = {}
        self._sequential_and_throughput(targets, granian)
        self.results["servers"] = granian
        self.results["smuggling"]["granian"] = smuggling.run(gateway_service.port)
        gateway_service.stop()
        bare_service.stop()


def run(config: BenchConfig) -> dict[str, Any]:
    """Run every scenario; the results (not yet judged or written)."""
    tools.ensure_wrk()
    window = machine.CpuWindow()
    with ExitStack() as exit_stack:
        workdir = Path(tempfile.mkdtemp(prefix="nzgw-bench-"))
        results = Run(config, exit_stack, workdir).execute()
        results["meta"]["logs"] = str(workdir)
    results["meta"]["cpu_during_run"] = window.close()
    results["gateway_log_complaints"] = logs.gateway_complaints(workdir)
    return results


def _difference(value: Any, base: Any) -> float | None:
    if isinstance(value, int | float) and isinstance(base, int | float):
        return round(value - base, 3)
    return None
