"""The request head the forwarding client writes, and where it writes it.

`parse_origin` turns a base URL into host, port, `Host` header and path prefix;
`request_head` writes the request line and headers. A property test reads every head
back with httptools' request parser (as a server would) and finds exactly what was
asked for; a header that could split the request is refused before anything is sent.
"""

from __future__ import annotations

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronetz_gateway.proxy.http_client import UpstreamClient, parse_origin, request_head


@pytest.mark.parametrize(
    "headers",
    [{"x-a": "1\r\nx-b: 2"}, {"x-a": "1\nx"}, {"x-a\r\nx-b": "1"}, {"x-a": "é€"}],
)
async def test_a_header_that_could_split_the_request_is_refused(headers: dict[str, str]) -> None:
    client = UpstreamClient(connect_timeout=1.0, read_timeout=1.0, max_connections=1)
    try:
        with pytest.raises(ValueError, match="header"):
            await client.request("POST", "http://127.0.0.1:1", "/api/chat", headers, b"{}")
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("base", "host", "port", "header", "prefix"),
    [
        ("http://127.0.0.1:11434", "127.0.0.1", 11434, "127.0.0.1:11434", ""),
        ("http://ollama", "ollama", 80, "ollama", ""),
        ("https://ollama.example/v/", "ollama.example", 443, "ollama.example", "/v"),
        ("http://[::1]:8080", "::1", 8080, "[::1]:8080", ""),
    ],
)
def test_origins(base: str, host: str, port: int, header: str, prefix: str) -> None:
    origin = parse_origin(base)
    assert (origin.host, origin.port, origin.host_header, origin.prefix) == (
        host,
        port,
        header,
        prefix,
    )


class Parsed:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.body = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


header_text = (
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)
header_name = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z")


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(header_name, header_text, max_size=8),
    body=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_what_a_server_parses_is_what_was_asked(
    headers: dict[str, str], body: bytes | None
) -> None:
    headers.pop("host", None)
    headers.pop("content-length", None)
    headers.pop("transfer-encoding", None)
    origin = parse_origin("http://127.0.0.1:11434")
    message = request_head("POST", origin, "/api/chat", headers, body) + (body or b"")
    parsed = Parsed()
    parser = httptools.HttpRequestParser(parsed)
    parser.feed_data(message)
    assert parsed.complete
    assert parsed.url == b"/api/chat"
    expected = [(b"host", b"127.0.0.1:11434")]
    expected += [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    if body is not None:
        expected.append((b"content-length", str(len(body)).encode()))
    assert parsed.headers == expected
    assert parsed.body == (body or b"")
