"""Whether OpenTelemetry tracing is on, read from the standard `OTEL_*` variables.

Imports nothing of OpenTelemetry: the gateway decides here, once at start, whether to
load the SDK at all (docs/OBSERVABILITY.md, "Traces"). Tracing is on when an OTLP
endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the traces-only
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), unless `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none`. Everything else (service name, resource attributes,
headers, timeout, compression, certificates, sampler, batching) is read by the SDK
itself from its standard variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from neuronetz_gateway.config import ConfigError

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
SDK_DISABLED = "OTEL_SDK_DISABLED"
TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
SERVICE_NAME = "OTEL_SERVICE_NAME"
RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"

# The one OTLP transport the gateway ships (no gRPC stack in the image).
SUPPORTED_PROTOCOL = "http/protobuf"
DEFAULT_SERVICE_NAME = "neuronetz-gateway"


def _value(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def tracing_enabled(environ: Mapping[str, str]) -> bool:
    """True when traces are to be exported (see the module docstring)."""
    if not (_value(environ, ENDPOINT) or _value(environ, TRACES_ENDPOINT)):
        return False
    if _value(environ, SDK_DISABLED).lower() == "true":
        return False
    exporter = _value(environ, TRACES_EXPORTER).lower()
    return exporter in ("", "otlp")


def check_tracing_environment(environ: Mapping[str, str]) -> None:
    """Refuse, at start, a tracing configuration the gateway cannot honour.

    Raises `ConfigError` for an OTLP protocol other than `http/protobuf` and for a traces
    exporter other than `otlp`/`none`: silently exporting nothing would look like a
    working setup.
    """
    if not (_value(environ, ENDPOINT) or _value(environ, TRACES_ENDPOINT)):
        return
    exporter = _value(environ, TRACES_EXPORTER).lower()
    if exporter not in ("", "otlp", "none"):
        raise ConfigError(
            f"invalid configuration: {TRACES_EXPORTER}: {exporter!r} is not supported "
            "(otlp or none)"
        )
    name = TRACES_PROTOCOL if _value(environ, TRACES_PROTOCOL) else PROTOCOL
    protocol = _value(environ, name).lower()
    if protocol and protocol != SUPPORTED_PROTOCOL:
        raise ConfigError(
            f"invalid configuration: {name}: {protocol!r} is not supported "
            f"(the gateway exports OTLP over {SUPPORTED_PROTOCOL})"
        )


def service_name_configured(environ: Mapping[str, str]) -> bool:
    """True when the operator named the service (else it is `neuronetz-gateway`)."""
    if _value(environ, SERVICE_NAME):
        return True
    pairs = _value(environ, RESOURCE_ATTRIBUTES).split(",")
    return any(pair.split("=", 1)[0].strip() == "service.name" for pair in pairs)
