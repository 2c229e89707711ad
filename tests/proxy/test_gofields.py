"""Go's key matching (docs/REFERENCE.md §11): which field a key sets."""

from __future__ import annotations

import pytest

from neuronetz_gateway.proxy.gofields import Fields, field_name


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("model", "model"),
        ("Model", "model"),
        ("MAX_TOKENS", "max_tokens"),
        ("\u212aeep_alive", "keep_alive"),  # KELVIN SIGN folds to k
        ("\u017ftream", "stream"),  # LONG S folds to s
        ("_debug_render_only", "_debug_render_only"),
        ("\u0131nput", None),  # dotless i: no simple folding to i
        ("\u0130NPUT", None),  # dotted capital I: none either
        ("\ufb06ream", None),  # the ligature "st" folds fully, never simply
        ("mod\u00e9l", None),
    ],
)
def test_field_name_is_goes_simple_case_folding(key: str, field: str | None) -> None:
    assert field_name(key) == field


def test_lower_case_objects_are_looked_up_as_they_are() -> None:
    fields = Fields({"model": "m", "options": {}})
    assert fields.key("model") == "model"
    assert fields.key("stream") is None
    assert fields.get("options") == {}


def test_other_objects_find_the_clients_spelling() -> None:
    fields = Fields({"Model": "m", "\u017ftream": False, "Options": None, "\u0131nput": "x"})
    assert fields.key("model") == "Model"
    assert fields.get("stream") is False
    assert fields.key("options") == "Options"
    assert fields.get("options") is None  # null: as if absent, as in Go
    assert fields.key("input") is None
    assert fields.key_for_writing("options") == "Options"
    assert fields.key_for_writing("keep_alive") == "keep_alive"
