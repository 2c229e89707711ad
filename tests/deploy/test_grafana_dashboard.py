"""The Grafana dashboard's structure (ops/grafana/): a data source variable that every
panel and query uses, instance and model variables, unique panel ids, panels that do not
overlap, and no hard-coded instance: every series a query selects is filtered by the
instance variable. That every query returns data is tested against a real Prometheus
(tests/e2e/test_prometheus_scrape.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.dashboard import (
    DASHBOARD,
    DASHBOARD_PROVISIONING,
    all_panels,
    load_dashboard,
    load_yaml,
    panel_queries,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# A metric name followed by its label matchers (or by nothing).
SELECTOR = re.compile(r"\b(neuronetz_\w+|up)\b(\{[^}]*\})?")
INSTANCE_FILTER = 'instance=~"$instance"'


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def test_is_importable_anywhere(dashboard: dict[str, Any]) -> None:
    # No instance-specific id; a fixed uid, so provisioning and links find it again.
    assert dashboard["id"] is None
    assert dashboard["uid"] == "neuronetz-gateway"
    assert dashboard["title"]
    assert "__inputs" not in dashboard  # nothing to answer at import: the variable asks


def test_data_source_is_a_variable(dashboard: dict[str, Any]) -> None:
    source = variables(dashboard)["datasource"]
    assert source["type"] == "datasource"
    assert source["query"] == "prometheus"
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_instance_and_model_variables(dashboard: dict[str, Any]) -> None:
    found = variables(dashboard)
    for name, metric in (("instance", "neuronetz_"), ("model", "neuronetz_tokens_total")):
        variable = found[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["query"]["query"].startswith(f"label_values({metric}")
        assert variable["includeAll"]
        assert variable["multi"]
        assert variable["allValue"] == ".*"
    assert INSTANCE_FILTER in found["model"]["query"]["query"]


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = all_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    titles = [panel["title"] for panel in panels]
    assert len(titles) == len(set(titles))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] >= 0, panel["title"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_selector_is_filtered_by_the_instance_variable(dashboard: dict[str, Any]) -> None:
    queries = panel_queries(dashboard)
    assert len(queries) >= 20
    for query in queries:
        assert "instance=" not in query.expr.replace(INSTANCE_FILTER, ""), query
        selectors = SELECTOR.findall(query.expr)
        assert selectors, query
        for metric, matchers in selectors:
            assert INSTANCE_FILTER in matchers, (query.panel, metric)


def test_model_panels_follow_the_model_variable(dashboard: dict[str, Any]) -> None:
    for query in panel_queries(dashboard):
        for metric, matchers in SELECTOR.findall(query.expr):
            if metric == "neuronetz_tokens_total":
                assert 'model=~"$model"' in matchers, query.panel


def test_provisioning_file_points_grafana_at_a_folder() -> None:
    provisioning = load_yaml(DASHBOARD_PROVISIONING)
    assert provisioning["apiVersion"] == 1
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    assert DASHBOARD.name in DASHBOARD_PROVISIONING.read_text()
