"""Header hygiene (docs/REFERENCE.md §4.7).

Upstream requests are built from an allowlist, so nothing the client sent reaches
Ollama unless named here: not `Authorization`, `Cookie`, hop-by-hop headers, headers
named in `Connection`, nor any `X-Forwarded-*`/`Forwarded` the gateway did not
compute. The client address is the socket peer, or, only when that peer is a trusted
proxy, the right-most untrusted address of its `X-Forwarded-For` chain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from neuronetz_gateway.config import IPNetwork

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
    }
)


def hop_by_hop_names(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Lower-case names that must not cross a proxy: the fixed set plus `Connection`'s."""
    names = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == "connection":
            names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names


def strip_hop_by_hop(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """`headers` without hop-by-hop ones, `Proxy-*`, and the names `Connection` lists."""
    drop = hop_by_hop_names(headers)
    return [
        (name, value)
        for name, value in headers
        if name.lower() not in drop and not name.lower().startswith("proxy-")
    ]


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    """True when `address` is in one of the `trusted` networks (`TRUSTED_PROXY_IPS`)."""
    ip = _parse_ip(address)
    return ip is not None and any(ip in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[bytes], trusted: Sequence[IPNetwork]
) -> str | None:
    """The client's IP: the peer, unless the peer is a trusted proxy that forwarded for one.

    Walks the `X-Forwarded-For` chain from the right, skipping trusted proxies, and
    stops at the first untrusted hop: everything left of it could be forged.
    """
    if peer is None or not trusted or not forwarded_for or not is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if _parse_ip(hop) is None:
            return peer  # a malformed chain proves nothing: fall back to the socket
        if not is_trusted(hop, trusted):
            return str(_parse_ip(hop))
    return str(_parse_ip(hops[0])) if hops else peer


def upstream_headers(request_id: str, client_ip: str | None, *, has_body: bool) -> dict[str, str]:
    """The complete header set of an upstream request (aiohttp adds `Host` from the URL)."""
    # `identity`: what is relayed and counted must be readable (clients such as Codex ask
    # for compressed answers; their Accept-Encoding is never forwarded).
    headers = {
        "x-request-id": request_id,
        "accept": "*/*",
        "accept-encoding": "identity",
        "user-agent": "neuronetz-gateway",
    }
    if has_body:
        headers["content-type"] = "application/json"
    if client_ip:
        headers["x-forwarded-for"] = client_ip
    return headers
