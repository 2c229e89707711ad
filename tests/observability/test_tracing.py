"""Tracing at unit level: when it is on, what a configuration may say, what the off path
imports, and `RequestTrace` with the SDK's in-memory exporter (sampling, retries,
stages left open). The exporter over HTTP is tested end to end in tests/e2e/test_tracing.py.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import uuid

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from neuronetz_gateway.config import ConfigError
from neuronetz_gateway.context import Exchange
from neuronetz_gateway.errors import Surface
from neuronetz_gateway.observability.tracing import Tracing
from neuronetz_gateway.observability.tracing_env import (
    check_tracing_environment,
    tracing_enabled,
)
from neuronetz_gateway.outcome import Ending, Outcome
from neuronetz_gateway.policy import routes

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        (ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_tracing_is_on_only_with_an_endpoint(environ: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(environ) is enabled


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        (
            {**ENDPOINT, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
    ],
)
def test_a_configuration_the_gateway_cannot_honour_is_refused(
    environ: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        check_tracing_environment(environ)


def test_supported_and_unused_configurations_pass() -> None:
    check_tracing_environment({**ENDPOINT, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    check_tracing_environment({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})  # tracing is off


def test_serve_refuses_a_grpc_endpoint_at_start(tmp_path: object) -> None:
    env = {
        "PATH": os.environ["PATH"],
        **ENDPOINT,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "neuronetz_gateway", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported" in done.stdout + done.stderr


def test_the_off_path_loads_no_opentelemetry_module() -> None:
    """Everything a request goes through, imported as the server does: neither the SDK,
    the exporter, protobuf nor the gateway's tracing module. (FastAPI itself imports the
    OpenTelemetry *API* at import time for its own telemetry layer, which is off.)"""
    code = (
        "import sys\n"
        "import neuronetz_gateway.app, neuronetz_gateway.gateway, neuronetz_gateway.pipeline\n"
        "import neuronetz_gateway.runtime, neuronetz_gateway.proxy.forward\n"
        "import neuronetz_gateway.cli.main, neuronetz_gateway.server.protocol\n"
        "heavy = ('opentelemetry.sdk', 'opentelemetry.exporter', 'opentelemetry.proto',\n"
        "         'google.protobuf', 'neuronetz_gateway.observability.tracing')\n"
        "env = heavy[-1] + '_env'\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(heavy) and m != env)\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _exchange(*, peer: str = "10.0.0.1", traceparent: str | None = None) -> Exchange:
    headers = [] if traceparent is None else [(b"traceparent", traceparent.encode())]
    return Exchange(
        scope={"headers": headers, "client": (peer, 5555)},
        receive=None,  # type: ignore[arg-type]  # never called: no body is read
        send=None,  # type: ignore[arg-type]  # never called: nothing is answered
        request_id=uuid.uuid4().hex,
        method="POST",
        surface=Surface.NATIVE,
        audit_route="/api/chat",
        client_ip=peer,
        user_agent=None,
        route=routes.CHAT,
        client_request_id="nz_pasted_key_1234",
    )


def _tracing(exporter: InMemorySpanExporter, **environ: str) -> Tracing:
    trusted = [ipaddress.ip_network("10.0.0.0/8")]
    return Tracing(trusted, exporter=exporter, environ=environ)


def test_an_unsampled_trace_exports_nothing_and_still_propagates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    trace = tracing.start(_exchange(traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00"))
    headers: dict[str, str] = {}
    trace.begin("auth")
    trace.upstream_started(_exchange(), "ollama:11434", "POST", headers)
    trace.finish(_exchange(), Ending(Outcome.OK, 200))
    tracing.force_flush()
    assert exporter.get_finished_spans() == ()
    version, trace_id, _, flags = headers["traceparent"].split("-")
    assert (version, trace_id, int(flags, 16) & 1) == ("00", TRACE_ID, 0)


def test_a_retried_attempt_and_stages_left_open_all_end() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    exchange = _exchange(peer="192.0.2.7", traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    trace = tracing.start(exchange)
    trace.begin("auth")
    trace.end("auth")
    trace.end("auth")  # ending twice does nothing
    first: dict[str, str] = {}
    trace.upstream_started(exchange, "ollama-a:11434", "POST", first)
    trace.upstream_ended(exchange, stream_error=False)  # no status line: no answer
    second: dict[str, str] = {}
    trace.upstream_started(exchange, "ollama-b:11434", "POST", second)
    trace.upstream_answered(200)
    exchange.disconnected = True  # the client left while the answer was relayed
    trace.upstream_ended(exchange, stream_error=False)
    trace.begin("queue_wait")  # never ended by its stage: the request's end ends it
    trace.finish(exchange, Ending(Outcome.CANCELLED, 499))
    tracing.force_flush()

    finished = exporter.get_finished_spans()
    attributes = {
        (span.name, dict(span.attributes or {}).get("server.address")): dict(span.attributes or {})
        for span in finished
    }
    (root,) = (span for span in finished if span.name == "POST /api/chat")
    assert root.parent is None  # 192.0.2.7 is not a trusted proxy: its traceparent is ignored
    assert format(root.context.trace_id, "032x") != TRACE_ID
    assert "neuronetz.client_request_id" not in attributes[("POST /api/chat", None)]
    assert attributes[("upstream", "ollama-a")]["error.type"] == "no_answer"
    assert attributes[("upstream", "ollama-b")]["http.response.status_code"] == 200
    assert attributes[("relay", None)]["error.type"] == "cancelled"
    assert attributes[("queue_wait", None)]["error.type"] == "cancelled"
    assert first["traceparent"] != second["traceparent"]
    assert all(span.end_time is not None for span in finished)
    assert len(finished) == 6


def test_a_trusted_proxys_traceparent_is_the_parent() -> None:
    exporter = InMemorySpanExporter()
    tracing = _tracing(exporter)
    exchange = _exchange(peer="10.1.2.3", traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    tracing.start(exchange).finish(exchange, Ending(Outcome.OK, 200))
    tracing.force_flush()
    (root,) = exporter.get_finished_spans()
    assert root.parent is not None
    assert root.parent.is_remote
    assert format(root.parent.span_id, "016x") == PARENT_ID
    assert format(root.context.trace_id, "032x") == TRACE_ID
    assert root.resource.attributes["service.name"] == "neuronetz-gateway"
