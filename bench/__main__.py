"""`python -m bench [--quick] [--out DIR]`: run the benchmark, print tables, write JSON."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from bench import report, runner, tables
from bench.config import FULL, QUICK, SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test, < 30 s)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results)")
    parser.add_argument("--no-granian", action="store_true", help="skip the granian comparison")
    parser.add_argument(
        "--only",
        help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="add a gateway with OpenTelemetry tracing on (target gateway-traced) to the "
        "sequential and throughput scenarios",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every gateway of the run, over the production defaults "
        "(repeatable; recorded in the results)",
    )
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.out is not None:
        config = replace(config, out_dir=args.out)
    if args.no_granian:
        config = replace(config, granian=False)
    if args.tracing:
        config = replace(config, tracing=True)
    if args.gateway_env:
        config = replace(config, gateway_env=_settings(parser, args.gateway_env))
    if args.only:
        chosen = frozenset(name.strip() for name in args.only.split(",") if name.strip())
        unknown = chosen - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
        config = replace(
            config, scenarios=chosen, granian=config.granian and "throughput" in chosen
        )
    results = runner.run(config)
    path = report.write(results, config.out_dir)
    print(tables.render(results))
    print(f"\nresults: {path}")
    return 0


def _settings(parser: argparse.ArgumentParser, pairs: list[str]) -> tuple[tuple[str, str], ...]:
    settings = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            parser.error(f"--gateway-env wants NAME=VALUE, not {pair!r}")
        settings.append((name, value))
    return tuple(settings)


if __name__ == "__main__":
    raise SystemExit(main())
