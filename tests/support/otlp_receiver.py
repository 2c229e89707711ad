"""A real OTLP/HTTP trace receiver on loopback, as a collector would run it.

It accepts `POST /v1/traces` with an `ExportTraceServiceRequest` in protobuf (gzip or
deflate when the exporter compresses), answers 200 with an empty
`ExportTraceServiceResponse`, keeps every raw body (for searches of everything a
gateway exported) and decodes the spans with `opentelemetry-proto`. Tests wait on a
condition for the spans they need; nothing sleeps.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACES_PATH = "/v1/traces"
SERVER_KIND = Span.SpanKind.SPAN_KIND_SERVER
CLIENT_KIND = Span.SpanKind.SPAN_KIND_CLIENT
INTERNAL_KIND = Span.SpanKind.SPAN_KIND_INTERNAL
STATUS_ERROR = Status.StatusCode.STATUS_CODE_ERROR


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind is not None else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, decoded; ids in lower-case hex ('' for no parent)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    resource: dict[str, Any]
    scope: str

    @classmethod
    def of(cls, span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
        return cls(
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            name=span.name,
            kind=span.kind,
            start_ns=span.start_time_unix_nano,
            end_ns=span.end_time_unix_nano,
            attributes=_attributes(span.attributes),
            status_code=span.status.code,
            resource=resource,
            scope=scope,
        )


class OtlpReceiver:
    """The receiver's state: raw bodies, decoded spans, request headers, behind one lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.bodies: list[bytes] = []
        self.spans: list[ReceivedSpan] = []
        self.headers: list[dict[str, str]] = []
        self.port = 0

    @property
    def endpoint(self) -> str:
        """What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to (the exporter adds /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    def receive(self, body: bytes, headers: dict[str, str]) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = [
            ReceivedSpan.of(span, _attributes(rs.resource.attributes), ss.scope.name)
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        with self._cond:
            self.bodies.append(body)
            self.headers.append(headers)
            self.spans.extend(spans)
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[ReceivedSpan], bool], timeout: float = 10.0
    ) -> ReceivedSpan:
        """The first received span matching `predicate`, waiting for it (bounded)."""
        with self._cond:
            found: list[ReceivedSpan] = []

            def match() -> bool:
                found[:] = [span for span in self.spans if predicate(span)]
                return bool(found)

            if not self._cond.wait_for(match, timeout):
                names = [(s.name, s.attributes.get("neuronetz.request_id")) for s in self.spans]
                raise TimeoutError(f"no matching span; received {names}")
            return found[0]

    def root_of(self, request_id: str, timeout: float = 10.0) -> ReceivedSpan:
        """The root (SERVER) span of the gateway's request `request_id`."""
        return self.wait_for(
            lambda span: (
                span.kind == SERVER_KIND
                and span.attributes.get("neuronetz.request_id") == request_id
            ),
            timeout,
        )

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """Every span received so far of trace `trace_id`, in order of their start."""
        with self._cond:
            spans = [span for span in self.spans if span.trace_id == trace_id]
        return sorted(spans, key=lambda span: span.start_ns)

    def everything(self) -> bytes:
        """Every body received, concatenated: what a search for leaks goes through."""
        with self._cond:
            return b"".join(self.bodies)


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if self.path != TRACES_PATH:
                self._answer(404, b"")
                return
            receiver.receive(body, {k.lower(): v for k, v in self.headers.items()})
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output stays the test's

    return Handler


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A running receiver on a free loopback port, stopped at the end of the block."""
    receiver = OtlpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
