"""A latency probe in a process of its own: `python -m bench.latency_probe PORT SECONDS`
sends `GET /healthz` on one keep-alive connection every 5 ms for SECONDS and prints the
latencies (seconds) as one JSON list.

Its own process, so that what the caller does meanwhile (threads pushing megabytes,
many sockets) cannot delay the probe's measurements, only the server can. Used by the
`transport` scenario and by tests/e2e/test_transport_limits.py.
"""

from __future__ import annotations

import json
import socket
import sys
import time

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n"
ANSWER_END = b'{"status":"ok"}'


def probe(port: int, seconds: float) -> list[float]:
    latencies = []
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            sock.sendall(REQUEST)
            answer = b""
            while not answer.endswith(ANSWER_END):
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the probe's connection")
                answer += data
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
    return latencies


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]), float(sys.argv[2]))))
