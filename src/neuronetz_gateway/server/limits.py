"""Transport limits: what a connection may cost before a request reaches the gateway.

Like nginx's `large_client_header_buffers`, `client_header_timeout`,
`client_body_timeout` and `worker_connections`; enforced by `server.protocol`
(docs/SECURITY.md). Plain data, built once from the settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuronetz_gateway.config import Settings


@dataclass(frozen=True, slots=True)
class TransportLimits:
    max_header_bytes: int = 32 * 1024  # request line + headers; beyond: 431, closed
    header_timeout_seconds: float = 10.0  # to send them; beyond: closed
    body_timeout_seconds: float = 30.0  # between two reads of the body; beyond: 408
    max_connections: int = 1024  # open in this process; beyond: 503, closed

    @classmethod
    def from_settings(cls, settings: Settings) -> TransportLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_seconds=settings.header_timeout_seconds,
            body_timeout_seconds=settings.body_timeout_seconds,
            max_connections=settings.max_connections,
        )
