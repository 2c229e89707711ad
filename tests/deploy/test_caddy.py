"""The example Caddyfile keeps its promises (docs/REFERENCE.md §5, §8): it validates, streams
unbuffered, hides /metrics and /readyz, sets X-Forwarded-For to the client alone, bounds
request bodies above the gateway's own limit, and times out headers but not streams."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from neuronetz_gateway.config import Settings
from tests.deploy.files import CADDYFILE
from tests.deploy.processes import RunningGateway, caddy_in_front_of

pytestmark = pytest.mark.skipif(
    shutil.which("caddy") is None,
    reason="caddy not installed (.ci/install-ops-tools installs it from Debian)",
)

# The gateway's own defaults, independent of any environment this test runs in.
UPSTREAM_READ_TIMEOUT_SECONDS = float(
    Settings.model_fields["upstream_read_timeout_seconds"].default
)
MAX_REQUEST_BODY_BYTES = int(Settings.model_fields["max_request_body_bytes"].default)
RELEASE_TIMEOUT_SECONDS = 10.0


def caddy_environment(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "ACME_EMAIL": "ops@example.com",
    }


def test_caddy_validates_the_example_offline(tmp_path: Path) -> None:
    result = subprocess.run(
        ["caddy", "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=caddy_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example as Caddy's JSON config, for the settings no short test can observe."""
    home = tmp_path_factory.mktemp("caddy-adapt")
    result = subprocess.run(
        ["caddy", "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=caddy_environment(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config = json.loads(result.stdout)
    assert isinstance(config, dict)
    return config


def handlers(node: object, name: str) -> Iterator[dict[str, Any]]:
    """Every handler called `name`, however deeply routes nest."""
    if isinstance(node, dict):
        if node.get("handler") == name:
            yield node
        for value in node.values():
            yield from handlers(value, name)
    elif isinstance(node, list):
        for item in node:
            yield from handlers(item, name)


def test_site_is_api_neuronetz_ai_with_an_acme_email(adapted: dict[str, Any]) -> None:
    (server,) = adapted["apps"]["http"]["servers"].values()
    hosts = [h for route in server["routes"] for m in route.get("match", []) for h in m["host"]]
    assert hosts == ["api.neuronetz.ai"]
    assert ":443" in server["listen"]
    issuers = json.dumps(adapted["apps"].get("tls", {}))
    assert "ops@example.com" in issuers


def test_headers_time_out_but_streams_do_not(adapted: dict[str, Any]) -> None:
    (server,) = adapted["apps"]["http"]["servers"].values()
    assert 0 < server["read_header_timeout"] <= 30 * 10**9
    # Whole-request read/write deadlines would cut long streams (golang/go#70834).
    assert "read_timeout" not in server
    assert "write_timeout" not in server


def test_proxy_waits_longer_than_the_gateway_does(adapted: dict[str, Any]) -> None:
    (proxy,) = handlers(adapted, "reverse_proxy")
    transport = proxy["transport"]
    gateway_limit_ns = UPSTREAM_READ_TIMEOUT_SECONDS * 10**9
    assert transport["response_header_timeout"] > gateway_limit_ns
    assert transport["read_timeout"] > gateway_limit_ns
    assert proxy["flush_interval"] == -1


def test_body_limit_is_above_the_gateways_own(adapted: dict[str, Any]) -> None:
    (limit,) = handlers(adapted, "request_body")
    assert limit["max_size"] >= MAX_REQUEST_BODY_BYTES


def test_no_response_compression(adapted: dict[str, Any]) -> None:
    # An encoder holds bytes back; streamed tokens must leave as they arrive.
    assert not list(handlers(adapted, "encode"))


# --- Caddy in front of an upstream that records what reaches it -----------------------


@dataclass
class Upstream:
    port: int
    seen_paths: list[str] = field(default_factory=list)
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    body_bytes: list[int] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    released_in_time: list[bool] = field(default_factory=list)


def make_handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def _record(self) -> None:
            upstream.seen_paths.append(self.path)
            upstream.seen_headers.append({k.lower(): v for k, v in self.headers.items()})

        def do_GET(self) -> None:
            self._record()
            if self.path == "/stream":
                self._stream()
                return
            body = b'{"upstream":"reached"}'
            self.send_response(200)
            self.send_header("Server", "leaky/1.0")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            # First line, then nothing until the client proves it got it.
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b'{"done":false}\n')
            upstream.released_in_time.append(upstream.release.wait(RELEASE_TIMEOUT_SECONDS))
            self._chunk(b'{"done":true}\n')
            self._chunk(b"")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def do_POST(self) -> None:
            self._record()
            remaining = int(self.headers.get("Content-Length") or 0)
            received = 0
            try:
                while remaining:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    received += len(chunk)
                    remaining -= len(chunk)
            except OSError:
                pass
            upstream.body_bytes.append(received)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Upstream(port=int(server.server_address[1]))
    server.RequestHandlerClass = make_handler(state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def caddy(upstream: Upstream, tmp_path: Path) -> Iterator[str]:
    with caddy_in_front_of(upstream.port, tmp_path) as base_url:
        yield base_url


def test_stream_chunks_arrive_before_the_stream_ends(caddy: str, upstream: Upstream) -> None:
    with (
        httpx.Client(timeout=5.0) as client,
        client.stream("GET", f"{caddy}/stream") as response,
    ):
        chunks = response.iter_raw()
        first = next(chunks)
        # The upstream has sent only its first line and waits: a buffering proxy would
        # hold it back until the read timeout fails this test.
        assert first == b'{"done":false}\n'
        upstream.release.set()
        rest = b"".join(chunks)
    assert rest == b'{"done":true}\n'
    assert upstream.released_in_time == [True]


@pytest.mark.parametrize(
    "path", ["/metrics", "/METRICS", "/metrics/", "//metrics", "/%6detrics", "/readyz"]
)
def test_internal_endpoints_are_not_exposed(caddy: str, upstream: Upstream, path: str) -> None:
    response = httpx.get(f"{caddy}{path}")
    assert response.status_code == 404
    assert upstream.seen_paths == []


def test_health_passes_through(caddy: str, upstream: Upstream) -> None:
    response = httpx.get(f"{caddy}/healthz")
    assert response.status_code == 200
    assert upstream.seen_paths == ["/healthz"]


def test_forwarded_for_is_the_client_alone(caddy: str, upstream: Upstream) -> None:
    httpx.get(f"{caddy}/v1/models", headers={"X-Forwarded-For": "203.0.113.9"})
    (headers,) = upstream.seen_headers
    assert headers["x-forwarded-for"] == "127.0.0.1"


def test_a_clients_trace_context_stops_at_caddy(caddy: str, upstream: Upstream) -> None:
    """The gateway trusts Caddy's `traceparent`: Caddy must not pass on a client's."""
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = {"traceparent": traceparent, "tracestate": "vendor=forged"}
    httpx.get(f"{caddy}/v1/models", headers=headers)
    (seen,) = upstream.seen_headers
    assert "traceparent" not in seen
    assert "tracestate" not in seen


def test_server_headers_are_removed(caddy: str) -> None:
    response = httpx.get(f"{caddy}/v1/models")
    assert response.status_code == 200
    assert "server" not in response.headers
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_gateway_sized_body_passes_and_oversized_body_is_cut(
    caddy: str, upstream: Upstream
) -> None:
    limit = MAX_REQUEST_BODY_BYTES
    ok = httpx.post(f"{caddy}/api/chat", content=b"x" * limit, timeout=30)
    assert ok.status_code == 200
    oversized = httpx.post(f"{caddy}/api/chat", content=b"x" * (limit * 2), timeout=30)
    # Caddy 2.6 answers 502, later releases 413; the gateway never sees it whole.
    assert oversized.status_code in (413, 502)
    assert upstream.body_bytes[0] == limit
    assert all(received < limit * 2 for received in upstream.body_bytes[1:])


def test_real_gateway_behind_caddy(gateway: RunningGateway, tmp_path: Path) -> None:
    with caddy_in_front_of(gateway.port, tmp_path) as base_url:
        health = httpx.get(f"{base_url}/healthz")
        hidden = httpx.get(f"{base_url}/metrics")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert health.headers.get("x-request-id")
    assert hidden.status_code == 404
    # The gateway itself does serve metrics, to those inside the network.
    assert httpx.get(f"{gateway.base_url}/metrics").status_code == 200
