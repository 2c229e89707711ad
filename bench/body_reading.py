"""Micro-benchmark: what reading a request body costs (docs/PERFORMANCE.md).

    uv run python -m bench.body_reading

For the benchmark's chat body and for Codex's 40 kB request: orjson alone, the strict
parse (depth cap, repeated keys in any case, docs/REFERENCE.md §11), and everything the
pipeline does with a body (read + rewrite, with a budget's output cap), in µs of CPU
per body (best of five runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from bench.requests import MODEL, chat_body
from neuronetz_gateway.config import Settings
from neuronetz_gateway.policy import routes
from neuronetz_gateway.policy.routes import Route
from neuronetz_gateway.proxy.reading import read_request
from neuronetz_gateway.proxy.rewrite import prepare
from neuronetz_gateway.proxy.strict_json import parse
from tests.support.client_requests import codex_request

RESPONSES = Route("/v1/responses", routes.V1_CHAT.surface, routes.V1_CHAT.kind, frozenset(), "")
SETTINGS = Settings()


def per_call_us(work: Callable[[], object], seconds: float = 0.5) -> float:
    """CPU µs per call, the best of five runs of about `seconds` each."""
    best = float("inf")
    for _ in range(5):
        calls, started = 0, time.process_time()
        while (spent := time.process_time() - started) < seconds:
            for _ in range(50):
                work()
            calls += 50
        best = min(best, spent / calls * 1e6)
    return best


def measure(raw: bytes, route: Route) -> tuple[float, float, float]:
    """(orjson alone, strict parse, read + rewrite) in µs per body."""
    return (
        per_call_us(lambda: orjson.loads(raw)),
        per_call_us(lambda: parse(raw, 64)),
        per_call_us(lambda: prepare(read_request(raw, route, 64), 100, SETTINGS)),
    )


def main() -> None:
    bodies = {
        "bench /api/chat (131 B)": (chat_body(openai=False, stream=False), routes.CHAT),
        "Codex /v1/responses (40 kB)": (
            orjson.dumps(codex_request(MODEL, "hi", "").body),
            RESPONSES,
        ),
    }
    print(f"{'body':<30} {'orjson':>8} {'strict':>8} {'read+rewrite':>13}  (µs per body)")
    for name, (raw, route) in bodies.items():
        plain, strict, whole = measure(raw, route)
        print(f"{name:<30} {plain:8.1f} {strict:8.1f} {whole:13.1f}")


if __name__ == "__main__":
    main()
