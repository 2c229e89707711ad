"""OpenTelemetry traces of the pipeline: one trace per request (docs/OBSERVABILITY.md, "Traces").

Imported only when tracing is on (`tracing_env.tracing_enabled`): with it off, no
OpenTelemetry module is loaded and every hook in the pipeline is one `is None` check of
`Exchange.trace`.

`Tracing` owns this process's tracer provider, exporting over OTLP/HTTP in a background
thread (the SDK's batch processor: the event loop never waits for an export). For each
request it starts a `RequestTrace`: a SERVER span `<METHOD> <route>`, continued from the
client's `traceparent` only when the socket peer is one of `TRUSTED_PROXY_IPS`, with the
stages as child spans:

    auth → admission → queue_wait → upstream (CLIENT; its context goes to Ollama as
    `traceparent`) → relay

What a span may carry is fixed here and nowhere else: names from the gateway's own
bookkeeping (route, catalog model, tenant name, displayed key prefix, request ids,
status, outcome, token counts). Never a key, a header value, a prompt or a response.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from neuronetz_gateway.config import IPNetwork
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.observability import tracing_env
from neuronetz_gateway.observability.span_attributes import (
    AttributeValue,
    finished_attributes,
    request_attributes,
    upstream_attributes,
)
from neuronetz_gateway.outcome import Ending
from neuronetz_gateway.proxy.headers import is_trusted

INSTRUMENTATION_SCOPE = "neuronetz_gateway"
TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
UPSTREAM = "upstream"
RELAY = "relay"
ERROR_TYPE = "error.type"


class RequestTrace:
    """The spans of one request. Stages are begun and ended by name; whatever is still
    open when the request finishes is ended then, marked with how the request ended."""

    __slots__ = ("_open", "_propagator", "_recording", "_root", "_root_context", "_tracer")

    def __init__(
        self,
        tracer: trace_api.Tracer,
        propagator: TraceContextTextMapPropagator,
        root: trace_api.Span,
    ) -> None:
        self._tracer = tracer
        self._propagator = propagator
        self._root = root
        self._root_context = trace_api.set_span_in_context(root, Context())
        # Not sampled: nothing is exported, but the trace context still goes to Ollama.
        self._recording = root.is_recording()
        self._open: dict[str, trace_api.Span] = {}

    @property
    def span(self) -> trace_api.Span:
        """The request's root span."""
        return self._root

    def begin(
        self,
        stage: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        """Start the child span `stage` (ending an open one of the same name first)."""
        if not self._recording:
            return
        self.end(stage)
        self._open[stage] = self._tracer.start_span(
            stage, self._root_context, kind, attributes=attributes
        )

    def end(
        self,
        stage: str,
        *,
        error: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """End the child span `stage` if it is open; `error`: a short word for why it
        failed (`error.type`, status ERROR). Ending a stage that is not open does nothing."""
        span = self._open.pop(stage, None)
        if span is None:
            return
        if attributes:
            span.set_attributes(attributes)
        if error is not None:
            span.set_attribute(ERROR_TYPE, error)
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    # -- the upstream exchange --------------------------------------------------------------

    def upstream_started(
        self, exchange: Exchange, upstream: str, method: str, headers: dict[str, str]
    ) -> None:
        """Begin the `upstream` span of one attempt and put its context into `headers`
        (`traceparent`, and `tracestate` when the trace has one) for Ollama."""
        if not self._recording:
            self._propagator.inject(headers, self._root_context)
            return
        self.begin(UPSTREAM, upstream_attributes(exchange, upstream, method), SpanKind.CLIENT)
        span = self._open[UPSTREAM]
        self._propagator.inject(headers, trace_api.set_span_in_context(span, Context()))

    def upstream_answered(self, status: int) -> None:
        """The status line arrived: the `upstream` span ends, the `relay` span begins
        (for a success; an error status is answered by the gateway, not relayed)."""
        if not self._recording:
            return
        span = self._open.get(UPSTREAM)
        if span is not None:
            span.set_attribute("http.response.status_code", status)
        self.end(UPSTREAM, error=str(status) if status >= 500 else None)
        if status < 300:
            self.begin(RELAY)

    def upstream_ended(self, exchange: Exchange, *, stream_error: bool) -> None:
        """The attempt is over: end what is still open, saying why from the exchange's
        facts. An open `upstream` span never got a status line (`no_answer`: refused,
        timed out, dropped; or `cancelled`: the client left). An open `relay` span ends
        `cancelled`, with the error the client was told, `upstream_stream_error` (Ollama
        reported one inside the stream), `incomplete`, or cleanly."""
        if not self._recording:
            return
        cancelled = exchange.disconnected
        self.end(UPSTREAM, error="cancelled" if cancelled else "no_answer")
        if RELAY not in self._open:
            return
        error: str | None = None
        if cancelled:
            error = "cancelled"
        elif exchange.error is not None:
            error = exchange.error.code or exchange.error.outcome.value
        elif stream_error:
            error = "upstream_stream_error"
        elif not exchange.response_complete:
            error = "incomplete"
        self.end(RELAY, error=error)

    # -- the end of the request ---------------------------------------------------------------

    def finish(self, exchange: Exchange, ending: Ending) -> None:
        """End every open stage and the root span with what the request's record says."""
        outcome = ending.outcome.value
        failed = outcome != "ok"
        for stage in list(self._open):
            self.end(stage, error=outcome if failed else None)
        root = self._root
        if self._recording:
            root.set_attributes(finished_attributes(exchange, ending))
            if failed:
                root.set_attribute(ERROR_TYPE, outcome)
            if ending.status >= 500:
                root.set_status(Status(StatusCode.ERROR))
        root.end()


class Tracing:
    """This process's tracer: provider, OTLP/HTTP exporter, W3C trace context."""

    def __init__(
        self,
        trusted_proxies: Sequence[IPNetwork],
        exporter: SpanExporter | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        attributes = (
            {}
            if tracing_env.service_name_configured(env)
            else {"service.name": tracing_env.DEFAULT_SERVICE_NAME}
        )
        # The sampler comes from OTEL_TRACES_SAMPLER(_ARG); default: parent-based, always on.
        self._provider = TracerProvider(resource=Resource.create(attributes))
        # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT, _COMPRESSION, ... and
        # OTEL_BSP_* are read by the exporter and the batch processor themselves.
        self._provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer(INSTRUMENTATION_SCOPE)
        self._propagator = TraceContextTextMapPropagator()
        self._trusted = tuple(trusted_proxies)

    def start(self, exchange: Exchange) -> RequestTrace:
        """The trace of `exchange`, begun now; its root span is `<METHOD> <route>`."""
        route = exchange.route
        name = f"{exchange.method} {route.name}" if route is not None else exchange.method
        root = self._tracer.start_span(
            name,
            self._parent(exchange),
            SpanKind.SERVER,
            attributes=request_attributes(exchange),
            start_time=_wall_clock_ns(exchange.started),
        )
        return RequestTrace(self._tracer, self._propagator, root)

    def _parent(self, exchange: Exchange) -> Context:
        """The client's trace context, only from a trusted proxy (else a new trace):
        anyone else could attach their requests to traces they do not own, or force
        sampling on."""
        client = exchange.scope.get("client")
        if not self._trusted or client is None or not is_trusted(client[0], self._trusted):
            return Context()
        traceparent = exchange.header(TRACEPARENT)
        if traceparent is None:
            return Context()
        carrier = {"traceparent": traceparent.decode("latin-1")}
        tracestate = exchange.header(TRACESTATE)
        if tracestate is not None:
            carrier["tracestate"] = tracestate.decode("latin-1")
        return self._propagator.extract(carrier, Context())

    def force_flush(self, timeout_millis: int = 5000) -> bool:
        """Export every ended span now (tests, shutdown)."""
        return self._provider.force_flush(timeout_millis)

    async def aclose(self) -> None:
        """Export what is left and stop the exporter thread (off the event loop: the
        final export may wait on the collector up to its timeout)."""
        await asyncio.to_thread(self._provider.shutdown)


def _wall_clock_ns(started_perf: float) -> int:
    """The wall-clock time (ns) of `started_perf`, a `time.perf_counter()` reading."""
    return time.time_ns() - int((time.perf_counter() - started_perf) * 1e9)
