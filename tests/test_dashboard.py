"""The Grafana dashboard in config/: well-formed, complete, and querying only real metrics."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.binaries import require_binary
from tests.promql_names import exported_metrics, referenced_metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "config" / "grafana-dashboard.json"
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "1d",
    "$datasource": "prometheus",
    "$instance": ".*",
    "$job": "notifier",
}


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _exprs() -> Iterator[str]:
    for panel in _panels():
        for target in panel["targets"]:
            yield target["expr"]
    for variable in _dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["query"]["query"].removeprefix("label_values(").rpartition(",")[0]


def _substituted(expr: str) -> str:
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def test_dashboard_header() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] == "notifier"
    assert dashboard["uid"]
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_panel_ids_are_unique_and_panels_do_not_overlap() -> None:
    panels = _dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("panel", _panels(), ids=lambda panel: str(panel["title"]))
def test_every_panel_queries_the_datasource_variable(panel: dict[str, Any]) -> None:
    assert panel["targets"], "a panel without a query shows nothing"
    assert panel["datasource"]["uid"] == "${datasource}"
    for target in panel["targets"]:
        assert target["expr"].strip()
        assert target["datasource"]["uid"] == "${datasource}"
        assert target["refId"]


def test_the_requested_panels_are_there() -> None:
    titles = {panel["title"] for panel in _panels()}
    assert titles >= {
        "Webhook response time",
        "Throughput",
        "Error rate",
        "Availability (up)",
        "Delivery success ratio",
        "Queue depth and oldest due job",
        "End-to-end latency P95 by channel",
        "Failed attempts by channel and reason",
        "Dead letters by channel and reason",
        "Circuit breaker state by channel",
        "Rate-limit utilisation by channel",
        "Open incidents by state",
        "Time to acknowledge",
        "Escalation steps, acknowledgements, last steps reached",
    }


def test_response_time_panel_uses_the_seed_thresholds() -> None:
    panel = next(p for p in _panels() if p["title"] == "Webhook response time")
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["color"], s["value"]) for s in steps] == [
        ("green", None),
        ("yellow", 0.5),
        ("red", 1.0),
    ]
    legends = [t["legendFormat"] for t in panel["targets"]]
    assert legends == ["P50", "P95", "P99"]


def test_every_query_uses_exported_metrics_only() -> None:
    exported = exported_metrics()
    for expr in _exprs():
        names = referenced_metrics(expr)
        assert names, f"selects no metric: {expr}"
        assert names <= exported, f"not exported: {names - exported} in {expr}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana variables substituted) as a recording rule."""
    rules = [
        {"record": f"dashboard:query_{index}", "expr": _substituted(expr)}
        for index, expr in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [require_binary("promtool", package="prometheus"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
