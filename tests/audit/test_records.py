"""Pure parts of auditing: prompt-log expiry and making client values storable."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from neuronetz_gateway.audit import prompt_log_expires_at
from neuronetz_gateway.audit.rows import clean_ip, clean_text, request_json, utc
from tests.conftest import make_settings

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_prompt_logs_expire_after_the_key_ttl_else_the_default() -> None:
    settings = make_settings("postgresql+asyncpg://unused/db", prompt_log_default_ttl_hours=24)
    assert prompt_log_expires_at(NOW, 6, settings) == NOW + timedelta(hours=6)
    assert prompt_log_expires_at(NOW, None, settings) == NOW + timedelta(hours=24)
    assert prompt_log_expires_at(NOW, 0, settings) == NOW + timedelta(hours=24)


def test_request_json_replaces_only_real_nul_characters() -> None:
    body = {"a": "x\x00y", "b": "\\u0000", "c": "\\\x00", "d": [1.5, float("inf")]}
    assert json.loads(request_json(body)) == {
        "a": "x\ufffdy",
        "b": "\\u0000",
        "c": "\\\ufffd",
        "d": [1.5, None],
    }


def test_request_json_stands_in_for_bodies_json_cannot_hold() -> None:
    assert json.loads(request_json({"text": "\ud800"})) == {
        "unloggable": "request body could not be stored as JSON"
    }


def test_clean_text_truncates_and_removes_what_postgres_refuses() -> None:
    assert clean_text("abcdef", 3) == "abc"
    assert clean_text("a\x00b") == "a\ufffdb"
    assert clean_text("bad \ud800 surrogate") == "bad ? surrogate"


def test_clean_ip_keeps_addresses_and_drops_the_rest() -> None:
    assert clean_ip("2001:db8::1") == "2001:db8::1"
    assert clean_ip("fe80::1%eth0") == "fe80::1"
    assert clean_ip("unknown") is None
    assert clean_ip(None) is None


def test_naive_timestamps_are_taken_as_utc() -> None:
    assert utc(datetime(2026, 1, 1, 12)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert utc(datetime(2026, 1, 1, 12, tzinfo=plus_two)) == datetime(2026, 1, 1, 10, tzinfo=UTC)
