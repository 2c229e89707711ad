"""The supervisors wait longer than the gateway's own shutdown takes at most.

After SIGTERM: SHUTDOWN_GRACE_SECONDS for requests in flight, then the drain of the
requests cut short, then the audit buffer's final flush. Compose and systemd must not
kill the process before that, or audit rows of the last seconds are lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from neuronetz_gateway.audit.writer import SHUTDOWN_TIMEOUT_SECONDS
from neuronetz_gateway.config import ConfigError, Settings, load_settings
from neuronetz_gateway.runtime import DRAIN_TIMEOUT_SECONDS
from tests.deploy.files import (
    COMPOSE_DEV,
    COMPOSE_PROD,
    compose_seconds,
    load_compose,
    systemd_seconds,
    unit_entries,
    unit_values,
)

GRACE = float(Settings.model_fields["shutdown_grace_seconds"].default)
LONGEST_SHUTDOWN = GRACE + DRAIN_TIMEOUT_SECONDS + SHUTDOWN_TIMEOUT_SECONDS


@pytest.mark.parametrize("compose", [COMPOSE_PROD, COMPOSE_DEV], ids=["prod", "dev"])
def test_compose_waits_longer_than_the_shutdown(compose: Path) -> None:
    grace = load_compose(compose)["services"]["gateway"]["stop_grace_period"]
    assert compose_seconds(grace) > LONGEST_SHUTDOWN + 10


def test_systemd_waits_longer_than_the_shutdown() -> None:
    [stop] = unit_values(unit_entries()["Service"], "TimeoutStopSec")
    assert systemd_seconds(stop) > LONGEST_SHUTDOWN + 10


def test_grace_period_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(_env_file=None).shutdown_grace_seconds == 30
    monkeypatch.setenv("SHUTDOWN_GRACE_SECONDS", "5")
    assert load_settings(_env_file=None).shutdown_grace_seconds == 5
    monkeypatch.setenv("SHUTDOWN_GRACE_SECONDS", "-1")
    with pytest.raises(ConfigError, match="SHUTDOWN_GRACE_SECONDS"):
        load_settings(_env_file=None)
