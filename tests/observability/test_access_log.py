"""`AccessLog`: one JSON line on stdout per request, with bounded, secret-free fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog.testing

from neuronetz_gateway.observability import access_log
from neuronetz_gateway.observability.access_log import AccessLog, loggable_route
from neuronetz_gateway.outcome import Ending, Outcome
from neuronetz_gateway.policy import routes
from tests.observability.test_request_metrics import exchange


def test_json_line_has_every_field(capfd: pytest.CaptureFixture[str]) -> None:
    served = exchange(routes.CHAT, tenant="acme", upstream_ms=3.14159)
    AccessLog("INFO", "json").write(served, Ending(Outcome.OK, 200), 12.3456)
    [line] = capfd.readouterr().out.splitlines()
    entry = json.loads(line)
    assert entry["event"] == "request"
    assert entry["logger"] == "neuronetz_gateway.access"
    assert entry["level"] == "info"
    assert entry["request_id"] == served.request_id
    assert entry["tenant"] == "acme"
    assert entry["key_prefix"] == "nz_x"
    assert (entry["route"], entry["status"], entry["outcome"]) == ("/api/chat", 200, "ok")
    assert (entry["latency_ms"], entry["upstream_ms"]) == (12.35, 3.14)
    assert entry["upstream"] == "ollama:11434"
    assert isinstance(entry["pid"], int)


def test_below_the_log_level_nothing_is_written(capfd: pytest.CaptureFixture[str]) -> None:
    AccessLog("WARNING", "json").write(exchange(routes.CHAT), Ending(Outcome.OK, 200), 1.0)
    assert capfd.readouterr().out == ""


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/api/nz_abcdefgh0123456789", "/api/nz_<redacted>"),
        ("/x/NZ_ABCDEFGH/y", "/x/nz_<redacted>/y"),
        ("/api/pull", "/api/pull"),
    ],
)
def test_key_like_text_is_cut_from_paths(path: str, logged: str) -> None:
    refused = exchange(None)
    refused.audit_route = path
    assert loggable_route(refused) == logged


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 1, 2, 3, 4, 5, 6, UTC),
        datetime(2026, 1, 2, 3, 4, 5, 120000, UTC),
        datetime(2026, 1, 2, 3, 4, 5, 0, UTC),  # orjson alone would leave ".000000" out
        datetime(1, 1, 1, 0, 0, 0, 1, UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, UTC),
    ],
)
def test_timestamp_is_isoformat_in_microseconds(
    now: datetime, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    class Frozen:
        @staticmethod
        def now(tz: Any = None) -> datetime:
            return now  # a datetime itself: orjson writes no subclass natively

    monkeypatch.setattr(access_log, "datetime", Frozen)
    AccessLog("INFO", "json").write(exchange(routes.CHAT), Ending(Outcome.OK, 200), 1.0)
    [line] = capfd.readouterr().out.splitlines()
    expected = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert json.loads(line)["timestamp"] == expected


def test_console_mode_logs_the_same_fields() -> None:
    served = exchange(routes.CHAT, tenant="acme", upstream_ms=3.14159)
    with structlog.testing.capture_logs() as logged:
        AccessLog("INFO", "console").write(served, Ending(Outcome.OK, 200), 12.3456)
    [entry] = logged
    assert (entry["event"], entry["log_level"]) == ("request", "info")
    assert (entry["request_id"], entry["tenant"]) == (served.request_id, "acme")
    assert (entry["latency_ms"], entry["upstream_ms"]) == (12.35, 3.14)
