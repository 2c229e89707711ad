"""Raw HTTP/1.1 over a socket: request targets exactly as written (no client-side
normalisation of `..`, `%2F`, `//`, case, NUL), for adversarial tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes


def raw_request(
    port: int,
    method: str,
    target: bytes | str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    extra_header_lines: list[bytes] | None = None,
    timeout: float = 10.0,
) -> RawResponse:
    """Send one request with `Connection: close` and read the whole answer."""
    target_bytes = target if isinstance(target, bytes) else target.encode("latin-1")
    lines = [method.encode() + b" " + target_bytes + b" HTTP/1.1", b"Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    lines.extend(extra_header_lines or [])
    if body and not any(n.lower() == "transfer-encoding" for n in (headers or {})):
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    payload = b"\r\n".join(lines) + b"\r\n\r\n" + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return parse_response(b"".join(chunks))


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return RawResponse(status=status, headers=headers, body=body, raw=raw)


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        data = rest[size + 2 :]
    return b"".join(out)
