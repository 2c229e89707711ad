"""The Prometheus rules (ops/prometheus/) are valid, and their unit tests pass and cover
every alert both ways: a case where it fires and a case where it stays quiet."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict

import pytest

from tests.support.dashboard import RULES, RULES_TEST, load_yaml, rules

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (.ci/install-ops-tools installs Debian's prometheus)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args],
        cwd=RULES.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in rules(load_yaml(RULES)) if "alert" in rule}
    fired: dict[str, bool] = defaultdict(bool)
    quiet: dict[str, bool] = defaultdict(bool)
    for case in load_yaml(RULES_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            if check.get("exp_alerts"):
                fired[check["alertname"]] = True
            else:
                quiet[check["alertname"]] = True
    assert alerts, "no alerts found"
    assert alerts - set(fired) == set(), "alerts never tested firing"
    assert alerts - set(quiet) == set(), "alerts never tested quiet"
    assert set(fired) | set(quiet) <= alerts, "tests name alerts that do not exist"


def test_alerts_carry_severity_and_text() -> None:
    for rule in rules(load_yaml(RULES)):
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]
