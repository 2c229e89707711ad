"""Micro-benchmark: what tracing costs one request (docs/PERFORMANCE.md, "Tracing").

    uv run python -m bench.tracing_cost

CPU µs per request (best of five runs) of:
- *off*: the pipeline's hooks with `Exchange.trace` None (six `is None` checks);
- *on, spans*: what the request's own task does with tracing on — the root span, the
  auth, admission, upstream and relay stages, the trace context for Ollama and the
  finished attributes — with the SDK's batch processor queueing the five spans;
- *on, export*: what the exporter thread then spends per request, encoding the five
  spans to OTLP protobuf (the HTTP POST to the collector is not included).

The end-to-end figure under load is `python -m bench --only sequential,throughput
--tracing` (target `gateway-traced`).
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from neuronetz_gateway.auth.principal import Principal
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import Surface
from neuronetz_gateway.observability.tracing import Tracing
from neuronetz_gateway.outcome import Ending, Outcome
from neuronetz_gateway.policy import routes

REQUESTS = 5000
RUNS = 5
OK = Ending(Outcome.OK, 200)


class _Discard(SpanExporter):
    """Keeps the spans' count only: the export path without encoding or network."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _exchange() -> Exchange:
    exchange = Exchange(
        scope={"headers": [], "client": ("127.0.0.1", 5555)},
        receive=None,  # type: ignore[arg-type]  # never called
        send=None,  # type: ignore[arg-type]  # never called
        request_id=uuid.uuid4().hex,
        method="POST",
        surface=Surface.NATIVE,
        audit_route="/api/chat",
        client_ip="127.0.0.1",
        user_agent=None,
        route=routes.CHAT,
    )
    exchange.principal = Principal(
        tenant_id=uuid.uuid4(), tenant_name="acme", key_id=uuid.uuid4(), key_prefix="nz_ab12cd34"
    )
    exchange.model = "llama3.1:8b"
    exchange.prompt_tokens, exchange.completion_tokens = 26, 412
    return exchange


def _best_us(work: Callable[[], None], count: int) -> float:
    best = float("inf")
    for _ in range(RUNS):
        started = time.process_time()
        for _ in range(count):
            work()
        best = min(best, time.process_time() - started)
    return best / count * 1e6


def _hooks_off(exchange: Exchange) -> Callable[[], None]:
    def work() -> None:
        for _ in range(6):
            if exchange.trace is not None:
                raise AssertionError("tracing is off")

    return work


def _one_request(tracing: Tracing, exchange: Exchange) -> Callable[[], None]:
    def work() -> None:
        trace = tracing.start(exchange)
        trace.begin("auth")
        trace.end("auth")
        trace.begin("admission")
        trace.end("admission")
        headers: dict[str, str] = {}
        trace.upstream_started(exchange, "ollama:11434", "POST", headers)
        trace.upstream_answered(200)
        exchange.response_complete = True
        trace.upstream_ended(exchange, stream_error=False)
        trace.finish(exchange, OK)

    return work


def main() -> None:
    exchange = _exchange()
    trusted = [ipaddress.ip_network("127.0.0.1/32")]
    off = _best_us(_hooks_off(exchange), REQUESTS * 10)
    discard = _Discard()
    tracing = Tracing(trusted, exporter=discard, environ={})
    spans_us = _best_us(_one_request(tracing, exchange), REQUESTS)
    tracing.force_flush()
    keep = _Keep()
    kept = Tracing(trusted, exporter=keep, environ={})
    _one_request(kept, exchange)()
    kept.force_flush()
    batch = keep.spans * (512 // len(keep.spans))  # the batch processor's default size
    per_batch = _best_us(lambda: encode_spans(batch).SerializeToString(), 20)
    export_us = per_batch / (len(batch) / len(keep.spans))
    print(f"off (6 hooks):            {off:8.3f} µs/request")
    print(f"on, spans (request task): {spans_us:8.1f} µs/request")
    print(f"on, export (encoding):    {export_us:8.1f} µs/request ({len(keep.spans)} spans)")
    print(f"spans queued: {discard.spans}")


if __name__ == "__main__":
    main()
