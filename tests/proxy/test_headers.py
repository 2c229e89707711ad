"""Header hygiene helpers (docs/REFERENCE.md §4.7): hop-by-hop stripping and the client address."""

from __future__ import annotations

import ipaddress

import pytest

from neuronetz_gateway.proxy.headers import client_address, strip_hop_by_hop, upstream_headers

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


def test_strip_hop_by_hop_and_connection_named_headers() -> None:
    headers = [
        ("Connection", "keep-alive, X-Secret, x-other"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Trailer", "X"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic x"),
        ("Proxy-Foo", "1"),
        ("X-Secret", "s"),
        ("X-Other", "o"),
        ("Content-Type", "application/json"),
    ]
    assert strip_hop_by_hop(headers) == [("Content-Type", "application/json")]


def test_upstream_headers_are_an_allowlist() -> None:
    headers = upstream_headers("rid-1", "203.0.113.9", has_body=True)
    assert headers == {
        "x-request-id": "rid-1",
        "accept": "*/*",
        "accept-encoding": "identity",
        "user-agent": "neuronetz-gateway",
        "content-type": "application/json",
        "x-forwarded-for": "203.0.113.9",
    }
    assert "content-type" not in upstream_headers("r", None, has_body=False)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Untrusted peers cannot claim another address.
        ("203.0.113.5", [b"1.2.3.4"], "203.0.113.5"),
        # A trusted proxy forwards for the real client.
        ("10.0.0.2", [b"198.51.100.7"], "198.51.100.7"),
        # Right-most untrusted hop wins; what the client wrote on the left is ignored.
        ("10.0.0.2", [b"6.6.6.6, 198.51.100.7, 10.0.0.9"], "198.51.100.7"),
        # Several header lines are one chain.
        ("127.0.0.1", [b"6.6.6.6", b"198.51.100.7"], "198.51.100.7"),
        # Garbage in the chain proves nothing: the socket peer.
        ("10.0.0.2", [b"not-an-ip"], "10.0.0.2"),
        # Nothing forwarded: the peer.
        ("10.0.0.2", [], "10.0.0.2"),
        # All hops trusted: the left-most.
        ("10.0.0.2", [b"10.1.1.1, 10.2.2.2"], "10.1.1.1"),
        ("10.0.0.2", [b"[2001:db8::1]"], "2001:db8::1"),
    ],
)
def test_client_address(peer: str, forwarded: list[bytes], expected: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected


def test_no_trusted_proxies_means_the_peer() -> None:
    assert client_address("10.0.0.2", [b"1.2.3.4"], []) == "10.0.0.2"
