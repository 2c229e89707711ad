"""How big a benchmark run is: the full run, or the quick one the smoke test uses."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "sequential",
    "throughput",
    "workers",
    "profile",
    "streams",
    "flood",
    "smuggling",
    "transport",
    "memory",
    "queue",
)


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    sequential_count: int = 2000
    sequential_warmup: int = 200
    connection_counts: tuple[int, ...] = (32, 256)
    wrk_seconds: float = 10.0
    wrk_warmup_seconds: float = 2.0
    streams: int = 500
    stream_chunks: int = 100
    stream_interval_ms: float = 20.0
    stream_processes: int = 2
    stream_ramp_seconds: float = 1.0
    stream_warmup: int = 10
    memory_checkpoints: tuple[int, ...] = (10_000, 100_000)
    legit_rate: float = 200.0
    flood_rate: float = 1000.0
    flood_seconds: float = 10.0
    profile_seconds: float = 15.0
    # Transport limits: requests per protocol and shape (cost), and the attack's length:
    # past the gateway's header timeout (10 s), so the slowloris connections are closed.
    transport_cost_requests: int = 20_000
    transport_attack_seconds: float = 13.0
    transport_slowloris: int = 200
    worker_rounds: int = 3
    # The contended queue (scenario 10): clients sending streams of `queue_chunks` chunks
    # `queue_interval_ms` apart through `queue_slots` slots, for `queue_seconds`.
    queue_slots: int = 4
    queue_clients: int = 32
    queue_chunks: int = 10
    queue_interval_ms: float = 10.0
    queue_seconds: float = 10.0
    settle_seconds: float = 1.5
    granian: bool = True
    admin_database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/0"
    out_dir: Path = RESULTS_DIR
    # Which scenarios run (all by default): `--only sequential,throughput` for quick
    # iterations on one question; the tables show what ran.
    scenarios: frozenset[str] = frozenset(SCENARIOS)
    # `--tracing`: a second gateway process with OpenTelemetry tracing on (every request
    # sampled, exported to a local sink) joins the sequential and throughput scenarios as
    # target `gateway-traced`, measured in the same interleaved rounds as `gateway`.
    tracing: bool = False
    # `--gateway-env NAME=VALUE`: settings every gateway of the run gets on top of the
    # production defaults (to measure an operator's choice); the results record them.
    gateway_env: tuple[tuple[str, str], ...] = ()

    def runs(self, scenario: str) -> bool:
        return scenario in self.scenarios


FULL = BenchConfig()

QUICK = replace(
    FULL,
    quick=True,
    sequential_count=100,
    sequential_warmup=20,
    connection_counts=(32,),
    wrk_seconds=1.0,
    wrk_warmup_seconds=0.0,
    streams=20,
    stream_chunks=10,
    stream_processes=1,
    stream_ramp_seconds=0.1,
    stream_warmup=0,
    memory_checkpoints=(300, 600),
    legit_rate=50.0,
    flood_rate=100.0,
    flood_seconds=0.5,
    profile_seconds=1.0,
    transport_cost_requests=300,
    queue_seconds=1.0,
    queue_clients=8,
    transport_attack_seconds=1.5,
    transport_slowloris=20,
    worker_rounds=1,
    settle_seconds=0.2,
    granian=False,
)
