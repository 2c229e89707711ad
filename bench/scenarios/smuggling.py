"""Request-smuggling probes on raw sockets, run against each ASGI server.

Each probe is one TCP write of a request whose framing is ambiguous, with a second
request (`GET /healthz`) hidden where a server that frames the message differently
from a front proxy would see it. What counts is what the server does (RFC 9112 §6):

- `rejected`: it answers 400 (or another 4xx/5xx) and nothing else;
- `closed`: it answers the first request and closes the connection without reading
  the hidden one (allowed for Content-Length + Transfer-Encoding);
- `smuggled`: it also answers the hidden request — it framed the message one way a
  front proxy may frame another: a smuggling risk behind such a proxy;
- `accepted`: one answer, connection kept open, hidden bytes not treated as a request
  (for the two header-leniency probes, which hide nothing: the server took the
  malformed request as valid).
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

HIDDEN = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")
READ_SECONDS = 1.0


def _chunked(hidden: bytes = HIDDEN) -> bytes:
    return b"0\r\n\r\n" + hidden


def probes() -> dict[str, bytes]:
    """Probe name -> the bytes sent."""
    head = b"POST /api/chat HTTP/1.1\r\nHost: x\r\n"
    body = _chunked()
    length = str(len(body)).encode()
    return {
        "cl_and_te": head + b"Content-Length: " + length
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
        "te_and_cl": head + b"Transfer-Encoding: chunked\r\nContent-Length: " + length
        + b"\r\n\r\n" + body,
        "two_content_lengths": head + b"Content-Length: 0\r\nContent-Length: " + length
        + b"\r\n\r\n" + body,
        "content_length_list": head + b"Content-Length: 0, " + length + b"\r\n\r\n" + body,
        "te_space_before_colon": head + b"Transfer-Encoding : chunked\r\nContent-Length: "
        + length + b"\r\n\r\n" + body,
        "te_obfuscated_value": head + b"Transfer-Encoding: xchunked\r\nContent-Length: "
        + length + b"\r\n\r\n" + body,
        "te_chunked_not_last": head + b"Transfer-Encoding: chunked, identity\r\n\r\n" + body,
        "te_vertical_tab": head + b"Transfer-Encoding:\x0bchunked\r\nContent-Length: "
        + length + b"\r\n\r\n" + body,
        "te_obs_fold": head + b"X-Pad: a\r\n chunked\r\nTransfer-Encoding:\r\n chunked\r\n"
        b"Content-Length: " + length + b"\r\n\r\n" + body,
        "te_in_http10": b"POST /api/chat HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: " + length + b"\r\n\r\n" + body,
        "bad_chunk_size_prefix": head + b"Transfer-Encoding: chunked\r\n\r\n0x0\r\n\r\n" + HIDDEN,
        "chunk_ext_bare_lf": head + b"Transfer-Encoding: chunked\r\n\r\n0;a\n\r\n" + HIDDEN,
        # No hidden request in these two: after a complete request it would be a
        # legitimate pipelined one. They show how lenient the header parser is.
        "bare_lf_headers": b"POST /api/chat HTTP/1.1\nHost: x\nContent-Length: 0\n\n",
        "nul_in_header": head + b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    }  # fmt: skip


def probe(port: int, payload: bytes) -> dict[str, Any]:
    """Send `payload`, read until the server closes or stays quiet; classify."""
    received = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=READ_SECONDS) as sock:
        sock.sendall(payload)
        deadline = time.monotonic() + READ_SECONDS
        sock.settimeout(0.3)
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not data:
                closed = True
                break
            received += data
    statuses = [int(code) for code in _STATUS.findall(received)]
    return {"statuses": statuses, "closed": closed, "verdict": _verdict(statuses, closed)}


def _verdict(statuses: list[int], closed: bool) -> str:
    if len(statuses) > 1:
        return "smuggled"
    if not statuses:
        return "closed" if closed else "no-answer"
    if statuses[0] >= 400 and statuses[0] not in (401, 403, 404, 405):
        return "rejected"
    return "closed" if closed else "accepted"


def run(port: int) -> dict[str, Any]:
    """Every probe against the server on `port`."""
    return {name: probe(port, payload) for name, payload in probes().items()}
