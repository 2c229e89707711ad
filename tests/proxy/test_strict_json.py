"""One meaning per body (docs/REFERENCE.md §11): the depth cap and the refusal of
repeated keys, at parse time."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuronetz_gateway.errors import GatewayError
from neuronetz_gateway.proxy.strict_json import parse
from tests.support.bodies import Obj, render, repeats


def refusal(raw: bytes, max_depth: int = 64) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        parse(raw, max_depth)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"m","messages":[{"role":"user","content":"a:b"}],"options":{}}',
        b'{"a:b":"c:d","e":":","f":"\\u003a"}',
        b"[1, 2, {}]",
        b'"text"',
        b"  {} ",
    ],
)
def test_bodies_with_one_meaning_parse_as_json(raw: bytes) -> None:
    assert parse(raw, 64) == orjson.loads(raw)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b'{"model":"a","model":"b"}', "model"),
        (b'{"model":"a","Model":"b"}', "Model"),
        ('{"keep_alive":1,"\u212aeep_alive":2}'.encode(), "\u212aeep_alive"),
        ('{"stream":true,"\u017ftream":false}'.encode(), "\u017ftream"),
        (b'{"\\u006dodel":"a","model":"b"}', "model"),
        (b'{"options":{"num_predict":5,"num_predict":9}}', "options.num_predict"),
        (b'{"options":{"num_predict":5},"Options":{"num_predict":9}}', "Options"),
        (b'{"messages":[{"role":"user"},{"content":"x","CONTENT":"y"}]}', "messages[1].CONTENT"),
        (b'{"a":"x:y","a":"z"}', "a"),
        (b'{"a":"\\u003a","b":1,"b":2}', "b"),
        (b'[{"x":1,"x":1}]', "[0].x"),
    ],
)
def test_a_repeated_key_is_refused_and_named(raw: bytes, named: str) -> None:
    error = refusal(raw)
    assert f'the key "{named}" more than once' in error.message
    assert error.param == named


def test_the_message_says_why_case_variants_are_the_same_key() -> None:
    error = refusal(b'{"model":"a","Model":"b"}')
    assert '"model" and "Model" are the same key' in error.message


def test_a_long_key_is_shortened_in_the_message() -> None:
    key = "k" * 500
    error = refusal(orjson.dumps({key: 1})[:-1] + b',"' + key.upper().encode() + b'":2}')
    assert "…" in error.message
    assert len(error.message) < 400  # the 500-character key is not echoed whole


@pytest.mark.parametrize("levels", [65, 300, 1000, 2000])
def test_nesting_beyond_the_limit_is_refused(levels: int) -> None:
    arrays = b"[" * levels + b"]" * levels
    objects = b'{"a":' * levels + b"1" + b"}" * levels
    for raw in (arrays, objects):
        assert "nested too deeply (limit 64 levels)" in refusal(raw).message


def test_nesting_up_to_the_limit_parses() -> None:
    assert parse(b"[" * 64 + b"]" * 64, 64)
    assert "limit 8 levels" in refusal(b"[" * 9 + b"]" * 9, max_depth=8).message


@pytest.mark.parametrize(
    "raw", [b"", b"  ", b"{", b'{"a":1} x', b'{"a":1}{"a":2}', b'"\\ud800"', b"[NaN]", b"\xff"]
)
def test_invalid_json_is_refused(raw: bytes) -> None:
    assert refusal(raw).message.startswith("request body is")


# Keys and strings full of ':' (literal or escaped), repeated or not.
_KEYS = st.sampled_from(["a", "A", "a:b", ":", "b", "\u212a", "k"])
_STRINGS = st.sampled_from(["", ":", "x:y", "::", "\\"])
_VALUES = st.recursive(
    st.one_of(_STRINGS, st.integers(), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(st.tuples(_KEYS, inner), max_size=4).map(Obj),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=_VALUES.map(lambda v: Obj([("x", v)])), data=st.data())
def test_every_repeated_key_is_found_whatever_the_colons(value: Obj, data: st.DataObject) -> None:
    raw = render(data.draw, value).encode()
    if repeats(value):
        assert "more than once" in refusal(raw).message
    else:
        assert parse(raw, 64) == orjson.loads(raw)
