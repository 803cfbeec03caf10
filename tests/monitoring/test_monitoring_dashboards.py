"""The Grafana dashboards are complete, filter by $model, and their PromQL parses."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from promql_names import dashboard_exprs, dashboard_paths, iter_panels, selectors

PATHS = dashboard_paths()
MODEL_QUERY = "label_values(flowline_model_info, model_name)"
# Grafana's built-in interval variables, and a value that keeps the PromQL valid for the others.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Metrics without a model_name label: every pod's process metrics, and pipeline outcomes.
UNFILTERED_PREFIXES = ("process_", "flowline_gc_", "flowline_pipeline_", "flowline_memory_")  # per pod, not per model


def load(path: Path) -> dict:
    """A dashboard file, parsed."""
    return json.loads(path.read_text())


def test_three_dashboards_with_distinct_uids_and_titles() -> None:
    dashboards = [load(path) for path in PATHS]
    assert len(dashboards) == 3
    assert len({d["uid"] for d in dashboards}) == 3
    assert len({d["title"] for d in dashboards}) == 3


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_dashboard_is_complete(path: Path) -> None:
    dashboard = load(path)
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["title"].startswith("flowline / ")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["model"]["type"] == "query"
    assert variables["model"]["query"] == MODEL_QUERY
    assert variables["datasource"]["type"] == "datasource"
    panels = list(iter_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    graphs = [panel for panel in panels if panel["type"] != "row"]
    assert len(graphs) >= 8
    for panel in graphs:
        assert panel["title"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_panels_fit_the_grid_without_overlapping(path: Path) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in iter_panels(load(path)["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


@pytest.mark.parametrize("path", PATHS, ids=[p.name for p in PATHS])
def test_model_labelled_series_follow_the_model_variable(path: Path) -> None:
    for expr in dashboard_exprs(path):
        if ": variable " in expr.source:
            continue
        for selector in selectors(expr.expr):
            if selector.name.startswith(UNFILTERED_PREFIXES):
                continue
            assert ("model_name", "=~", "$model") in selector.matchers, f"{expr.source}: {selector.name}"


def promql_for_promtool(expr: str) -> str:
    """A dashboard expression with Grafana's interval variables replaced by durations."""
    for variable, duration in GRAFANA_INTERVALS.items():
        expr = expr.replace(variable, duration)
    return expr


def test_dashboard_promql_parses(promtool: str, tmp_path: Path) -> None:
    """promtool parses every dashboard expression, written as a recording rule."""
    exprs = [e for path in PATHS for e in dashboard_exprs(path)]
    rules = [{"record": f"dashboard:expr_{i}:check", "expr": promql_for_promtool(e.expr)} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_bad_dashboard_promql(promtool: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.rules.yaml"
    bad = promql_for_promtool("sum by (le (rate(flowline_http_requests_total[$__rate_interval]))")
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "a:b:c", "expr": bad}]}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
