"""The Grafana dashboard and the Prometheus rules as tests read them.

`panel_queries` lists every query of every panel; `as_prometheus_query` replaces the
dashboard's variables and Grafana's built-in intervals the way Grafana would before
sending a query to Prometheus, so a test can run it against a real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "ops" / "grafana" / "neuronetz-gateway.json"
DASHBOARD_PROVISIONING = REPO_ROOT / "ops" / "grafana" / "neuronetz-gateway.provisioning.yml"
RULES = REPO_ROOT / "ops" / "prometheus" / "neuronetz-gateway.rules.yml"
RULES_TEST = REPO_ROOT / "ops" / "prometheus" / "neuronetz-gateway.rules.test.yml"
PROMETHEUS_EXAMPLE = REPO_ROOT / "ops" / "prometheus" / "prometheus.example.yml"


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref_id: str
    expr: str


def load_dashboard() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(DASHBOARD.read_text()))


def load_yaml(path: Path) -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(path.read_text()))


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(panel["title"], target["refId"], target["expr"])
        for panel in all_panels(dashboard)
        if panel["type"] != "row"
        for target in panel.get("targets", [])
    ]


def as_prometheus_query(
    expr: str, *, instance: str, model: str, rate_interval: str, time_range: str
) -> str:
    """`expr` with the variables Grafana fills in: one selected instance and model."""
    return (
        expr.replace("$instance", instance)
        .replace("$model", model)
        .replace("$__rate_interval", rate_interval)
        .replace("$__range", time_range)
    )


def rules(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in document["groups"] for rule in group["rules"]]
