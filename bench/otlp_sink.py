"""`python -m bench.otlp_sink --port N`: an OTLP/HTTP trace collector that keeps nothing.

What `--tracing` points the traced gateway at (`OTEL_EXPORTER_OTLP_ENDPOINT`): it
answers every `POST /v1/traces` 200 with an empty `ExportTraceServiceResponse` and
counts the batches and bytes, which `GET /stats` returns as JSON (the run records them,
so a traced run that exported nothing is visible). It runs in its own process, as a
collector would, so its CPU is not charged to the gateway.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# An empty ExportTraceServiceResponse is zero bytes of protobuf.
EMPTY_RESPONSE = b""


class _Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches = 0
        self.bytes = 0


def _handler(counts: _Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with counts.lock:
                counts.batches += 1
                counts.bytes += len(body)
            self._answer(EMPTY_RESPONSE, "application/x-protobuf")

        def do_GET(self) -> None:
            with counts.lock:
                stats = {"batches": counts.batches, "bytes": counts.bytes}
            self._answer(json.dumps(stats).encode(), "application/json")

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp_sink", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), _handler(_Counts()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
