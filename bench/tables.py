"""The human-readable tables of a run (the JSON holds everything they show)."""

from __future__ import annotations

from typing import Any

from bench.report import checks_table, evaluate, table


def _ms(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def sequential_table(data: dict[str, Any]) -> str:
    rows = []
    for endpoint, per_target in data.items():
        direct = per_target["direct"]["latency_ms"]
        for name, result in per_target.items():
            latency = result["latency_ms"]
            rows.append([
                endpoint, name, _ms(latency["p50"]), _ms(latency["p99"]),
                _ms(latency["p50"] - direct["p50"]), _ms(latency["p99"] - direct["p99"]),
                str(result.get("cpu_us_per_request") or "-"), str(result["errors"]),
            ])  # fmt: skip
    header = [
        "endpoint",
        "target",
        "p50 ms",
        "p99 ms",
        "+p50 ms",
        "+p99 ms",
        "CPU us/req",
        "errors",
    ]
    return table(header, rows)


def throughput_table(data: dict[str, Any]) -> str:
    rows = []
    for connections, per_target in data.items():
        for name, result in per_target.items():
            latency = result["latency_ms"]
            cpu = result.get("cpu_us_per_request")
            share = result.get("cpu_share")
            rows.append([
                connections, name, f"{result['rps']:,.0f}", _ms(latency["p50"]),
                _ms(latency["p99"]), str(cpu or "-"), f"{share:.0%}" if share else "-",
                str(result["errors"]),
            ])  # fmt: skip
    header = ["conns", "target", "req/s", "p50 ms", "p99 ms", "CPU us/req", "CPU", "errors"]
    return table(header, rows)


def workers_table(data: dict[str, Any]) -> str:
    rows = []
    for name, count in (("1", "1"), ("auto", str(data["auto_workers"]))):
        result = data[name]
        rows.append([
            name, count, f"{result['rps']:,.0f}", _ms(result["p99_ms"]),
            str(result["cpu_us_per_request"] or "-"), str(result["errors"]),
        ])  # fmt: skip
    header = ["GATEWAY_WORKERS", "workers", "req/s", "p99 ms", "CPU us/req", "errors"]
    return table(header, rows)


def streams_table(data: dict[str, Any]) -> str:
    rows = []
    runs = [(name, data.get(name)) for name in ("direct", "bare", "gateway")]
    runs += [(f"gateway {path}", result) for path, result in data.get("surfaces", {}).items()]
    for name, result in runs:
        if result is None:
            continue
        rows.append([
            name, f"{result['completed']}/{result['streams']}", str(result["chunks"]),
            _ms(result["ttfb_ms"].get("p50")), _ms(result["ttfb_ms"].get("p99")),
            _ms(result["transit_ms"].get("p50")), _ms(result["transit_ms"].get("p99")),
            _ms(result["gap_ms"].get("p50")), _ms(result["gap_ms"].get("p99")),
            f"{100 * result['merged_read_share']:.2f}",
            ",".join(f"{share:.0%}" for share in result["client_cpu_share"]),
            str(result.get("server_cpu_us_per_chunk", "-")),
        ])  # fmt: skip
    header = [
        "target", "done", "chunks", "TTFB p50", "TTFB p99", "transit p50", "transit p99",
        "gap p50", "gap p99", "merged %", "client CPU", "server µs/chunk",
    ]  # fmt: skip
    return table(header, rows)


def memory_table(memory: dict[str, Any], streams: dict[str, Any]) -> str:
    rows = [["fresh gateway, after start-up", f"{memory.get('startup_kib', 0) / 1024:.1f}"]]
    rows.append(["fresh gateway, idle (settled)", f"{memory['idle_kib'] / 1024:.1f}"])
    for reading in memory["after"].values():
        rows.append([f"after {reading['requests']:,} requests", f"{reading['rss_kib'] / 1024:.1f}"])
    if streams:
        rows.append(["stream gateway, before streams", f"{streams['rss_before_kib'] / 1024:.1f}"])
        peak = streams["gateway"]["peak_rss_kib"]
        rows.append(
            [f"peak with {streams['gateway']['streams']} open streams", f"{peak / 1024:.1f}"]
        )
        rows.append(["per open stream (KiB)", f"{streams['per_stream_kib']:.1f}"])
    return table(["gateway RSS", "MiB"], rows)


def flood_table(data: dict[str, Any]) -> str:
    rows = []
    for label in ("without_flood", "with_flood"):
        result = data[label]
        latency = result["latency_ms"]
        rows.append([
            label.replace("_", " "), f"{data['legit_rate']:.0f}/s", _ms(latency.get("p50")),
            _ms(latency.get("p99")), str(result["statuses"]), str(result["dropped"]),
        ])  # fmt: skip
    flood = data["flood"]
    rows.append([
        "the flood itself", f"{data['flood_rate']:.0f}/s", _ms(flood["latency_ms"].get("p50")),
        _ms(flood["latency_ms"].get("p99")), str(flood["statuses"]), str(flood["dropped"]),
    ])  # fmt: skip
    return table(["traffic", "rate", "p50 ms", "p99 ms", "statuses", "not sent"], rows)


def profile_table(data: dict[str, Any], limit: int = 15) -> str:
    if not data.get("samples"):
        return "(no samples)"
    rows = [[name, f"{share:.1f}"] for name, share in data.get("stages", [])]
    stages = table(["stage (inclusive)", "% samples"], rows)
    rows = [[name, f"{share:.1f}"] for name, share in data["self"][:limit]]
    own = table(["function (self)", "% samples"], rows)
    rows = [[name, f"{share:.1f}"] for name, share in data["inclusive_by_package"][:limit]]
    packages = table(["package (inclusive)", "% samples"], rows)
    return f"{stages}\n\n{own}\n\n{packages}"


def smuggling_table(data: dict[str, Any]) -> str:
    servers = list(data)
    probes = list(data[servers[0]])
    rows = []
    for probe in probes:
        cells = []
        for server in servers:
            result = data[server][probe]
            codes = ",".join(map(str, result["statuses"])) or "-"
            cells.append(f"{result['verdict']} ({codes}{', closed' if result['closed'] else ''})")
        rows.append([probe, *cells])
    return table(["probe", *servers], rows)


def transport_table(data: dict[str, Any]) -> str:
    rows = [
        [shape, f"{c['uvicorn httptools']:.2f}", f"{c['gateway (limits)']:.2f}",
         f"{c['difference_us']:+.2f}"]
        for shape, c in data["cost_us_per_request"].items()
    ]  # fmt: skip
    cost = table(["request (in-process)", "uvicorn µs", "with limits µs", "cost µs"], rows)
    attack = data["attack"]
    healthz = attack["healthz_ms"]
    lines = [
        f"/healthz during the attack: p50 {healthz['p50']} ms, p99 {healthz['p99']} ms, "
        f"max {healthz['max']} ms ({healthz['n']} probes)",
        f"64 MB headers: {', '.join(attack['huge_headers'])}",
        f"slowloris: {attack['slowloris_closed']} closed "
        f"(after {attack['slowloris_closed_after_s']} s), {attack['slowloris_open']} still open",
        f"RSS: idle {attack['rss_mib']['idle']} MiB, peak {attack['rss_mib']['peak']} MiB",
    ]
    return cost + "\n\n" + "\n".join(lines)


def queue_table(data: dict[str, Any]) -> str:
    rows = []
    for name in ("queued", "unqueued"):
        result = data[name]
        rows.append([
            name, f"{result['rps']:,.1f}", str(result["requests"]),
            str(result["gateway_cpu_us_per_request"]), str(result["redis_cpu_us_per_request"]),
            str(result["errors"]),
        ])  # fmt: skip
    header = ["gateway", "req/s", "requests", "gateway CPU us/req", "Redis CPU us/req", "errors"]
    cost = data["cost_per_grant_us"]
    return (
        table(header, rows)
        + f"\nqueue's own cost per grant: gateway {cost['gateway']} us, Redis {cost['redis']} us"
    )


def tracing_table(data: dict[str, Any]) -> str:
    """`--tracing`: what tracing adds per request, per sequential endpoint."""
    rows = [
        [endpoint, str(added["cpu_us_per_request_added"]), _ms(added["p50_ms_added"])]
        for endpoint, added in data.items()
        if endpoint != "sink"
    ]
    sink = data["sink"]
    rows.append(["(exported)", f"{sink['batches']} batches", f"{sink['bytes']:,} bytes"])
    return table(["endpoint", "+CPU us/req", "+p50 ms"], rows)


def render(results: dict[str, Any]) -> str:
    """Every table of a run, targets first."""
    parts = ["== targets ==", checks_table(evaluate(results))]
    cpu = results.get("meta", {}).get("cpu_during_run")
    if cpu:
        parts += [
            "",
            f"machine busy {cpu['machine_busy_share']:.0%} during the run: benchmark processes "
            f"{cpu['bench_processes_share']:.0%}, Redis/Postgres/others "
            f"{cpu['redis_postgres_and_others_share']:.0%}",
        ]
    stub = results.get("stub_check")
    if stub:
        p99 = stub["latency_ms"]["p99"]
        parts += ["", f"stub direct, 32 conns: {stub['rps']:,.0f} req/s, p99 {p99:.2f} ms"]
    if "sequential" in results:
        parts += ["", "== 1 sequential (uvicorn) ==", sequential_table(results["sequential"])]
    if "throughput" in results:
        parts += ["", "== 2 throughput (uvicorn) ==", throughput_table(results["throughput"])]
    if "tracing" in results:
        parts += [
            "",
            "== tracing: gateway-traced minus gateway ==",
            tracing_table(results["tracing"]),
        ]
    if "workers" in results:
        connections = results["workers"]["connections"]
        title = f"== 7 workers: 1 vs auto ({connections} conns) =="
        parts += ["", title, workers_table(results["workers"])]
    if "streams" in results:
        parts += ["", "== 3 streams (ms) ==", streams_table(results["streams"])]
    if "memory" in results:
        parts += ["", "== 4 memory ==", memory_table(results["memory"], results.get("streams", {}))]
    if "auth_flood" in results:
        parts += ["", "== 5 auth flood ==", flood_table(results["auth_flood"])]
    if "queue" in results:
        data = results["queue"]
        title = f"== 10 queue: {data['clients']} clients, {data['slots']} slots =="
        parts += ["", title, queue_table(data)]
    servers = results.get("servers")
    if servers:
        parts += [
            "",
            "== uvicorn vs granian: 1 sequential ==",
            sequential_table(servers["sequential"]),
        ]
        parts += [
            "",
            "== uvicorn vs granian: 2 throughput ==",
            throughput_table(servers["throughput"]),
        ]
    if "smuggling" in results:
        parts += ["", "== request smuggling probes ==", smuggling_table(results["smuggling"])]
    if "transport" in results:
        parts += ["", "== transport limits ==", transport_table(results["transport"])]
    complaints = results.get("gateway_log_complaints", {})
    rows = [
        [log, event, str(n)] for log, events in complaints.items() for event, n in events.items()
    ]
    if rows:
        parts += [
            "",
            "== gateway warnings and errors (from its log) ==",
            table(["log", "event", "count"], rows),
        ]
    if "profile" in results:
        profile = results["profile"]
        parts += [
            "",
            f"== profile ({profile.get('samples', 0)} samples) ==",
            profile_table(profile),
        ]
    stream_profile = results.get("streams", {}).get("profile")
    if stream_profile:
        parts += [
            "",
            f"== profile during the streams ({stream_profile.get('samples', 0)} samples) ==",
            profile_table(stream_profile),
        ]
    return "\n".join(parts)
