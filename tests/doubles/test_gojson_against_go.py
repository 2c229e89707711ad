"""The double's Go-semantics reader (ollama/gojson.py) against Go's own encoding/json.

decide.go decodes bodies into structs with Ollama's json tags; on generated bodies (case
variants, folded characters, repeated keys, `\\u` escapes, nulls, wrong types) it must
decide exactly what the double decides, refusals included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronetz_gateway.proxy.gofields import field_name
from tests.doubles.gocheck import GoDecider, build, fold_table, go_available
from tests.doubles.ollama import gojson
from tests.support.bodies import Body, body

pytestmark = pytest.mark.skipif(
    not go_available(), reason="go not installed (.ci/install-ops-tools installs golang-go)"
)

SURFACES = {
    "native": ("/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show"),
    "openai": ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"),
    "anthropic": ("/v1/messages",),
    "responses": ("/v1/responses",),
}


@pytest.fixture(scope="session")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("gocheck"))


@pytest.fixture(scope="module")
def go(go_binary: Path) -> Iterator[GoDecider]:
    with GoDecider(go_binary) as decider:
        yield decider


def test_only_kelvin_and_long_s_fold_to_ascii(go_binary: Path) -> None:
    """Go equates exactly two non-ASCII characters with ASCII letters, and both the
    gateway (gofields) and the double (gojson.fold) know exactly those two."""
    table = fold_table(go_binary)
    assert table == {0x017F: "S", 0x212A: "K"}
    gateway = {c for c in range(0x80, 0x110000) if field_name(chr(c)) is not None}
    double = {c for c in range(0x80, 0x110000) if gojson.fold(chr(c)).isascii()}
    assert gateway == double == set(table)


def _floats(value: Any) -> Any:
    """Numbers as float64: Go writes a float64 in its shortest decimal form (2**60 as
    1152921504606847000), which reads back as a different int but the same float."""
    if isinstance(value, dict):
        return {key: _floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_floats(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _double(path: str, raw: bytes) -> dict[str, Any]:
    try:
        decision = gojson.decide(path, raw).as_json()
    except gojson.GoRefusal:
        return {"error": True}
    return decision | {"options": _floats(decision["options"])}


def _go(go: GoDecider, path: str, raw: bytes) -> dict[str, Any]:
    decision = go.decide(path, raw)
    if "error" in decision:
        return {"error": True}
    return decision | {"options": _floats(decision["options"])}


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_the_double_decides_as_go_does(go: GoDecider, surface: str) -> None:
    paths = SURFACES[surface]

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(paths))
        generated: Body = data.draw(body(path))
        assert _double(path, generated.raw) == _go(go, path, generated.raw), generated.raw

    check()


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        # A repeated slice is filled again over the old elements: the first `type` stays.
        ("/api/chat", b'{"model":"m","tools":[{"type":"web_search"}],"Tools":[{"name":"f"}]}'),
        # ... and a truncated element comes back when a third copy is longer again.
        (
            "/v1/chat/completions",
            b'{"model":"m","tools":[{"type":"a"},{"type":"b"}],"tools":[{"type":"c"}],'
            b'"tools":[{},{}]}',
        ),
        # Maps merge, structs behind pointers merge, null resets a pointer.
        ("/api/generate", b'{"model":"m","options":{"num_predict":5},"OPTIONS":{"seed":1}}'),
        (
            "/v1/completions",
            b'{"model":"m","stream_options":{"include_usage":true},"Stream_Options":{}}',
        ),
        ("/api/chat", b'{"model":"m","keep_alive":5,"KEEP_ALIVE":null}'),
        # Only the first JSON value counts.
        ("/api/chat", b'{"model":"m"} {"model":"n"}'),
        # Integers: literal syntax and int64's range; options: float64.
        ("/api/generate", b'{"model":"m","options":{"num_predict":1152921504606846976}}'),
        ("/v1/chat/completions", b'{"model":"m","max_tokens":5.0}'),
        ("/v1/chat/completions", b'{"model":"m","max_tokens":9223372036854775808}'),
        ("/api/generate", b'{"model":"m","options":{"num_predict":7.9}}'),
        # Folding: U+212A, U+017F match; U+0131, U+0130 and the ligature U+FB06 do not.
        ("/api/chat", '{"model":"m","\u212aeep_alive":1,"\u017ftream":false}'.encode()),
        ("/api/embed", '{"model":"m","\u0131nput":"x","\u0130NPUT":"y"}'.encode()),
        ("/v1/completions", '{"model":"m","\ufb06ream":true}'.encode()),
        # Escapes decode before matching; a lone surrogate becomes U+FFFD.
        ("/api/generate", b'{"\\u006dodel":"m","model\\ud800":"x"}'),
    ],
)
def test_hand_picked_cases(go: GoDecider, path: str, raw: bytes) -> None:
    assert _double(path, raw) == _go(go, path, raw)
