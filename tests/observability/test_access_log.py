"""`AccessLog`: one JSON line on stdout per request, with bounded, secret-free fields."""

from __future__ import annotations

import json

import pytest

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
