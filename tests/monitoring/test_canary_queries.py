"""The canary controller's Prometheus queries, evaluated by the real promtool on series a cluster produces: a
pod scaled away, a container restarted in place, the same model in another namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from flowline.canary import arm_queries, comparison_window, first_seen_query

POD = 'namespace="flowline", model_name="churn", model_version="{version}", pod="{pod}"'
# One sample a minute from 0 to 20m. Canary b's pod b1 answered 30 requests, 20 of them failed, and was scaled
# away at 10m; b2 served on; b3's container restarted at 6m (20 requests before, 56 after). The same model
# in another namespace failed a hundred times a minute: not this InferenceService's. Nor are the outcomes an
# application in another namespace exports (labelled with its own pod's namespace): README, "canary controller".
SERIES = {
    ("a", "a1"): {"requests": "0+10x20", "errors": "0x20", "successes": "0+3x20"},
    ("b", "b1"): {"requests": "0+3x10 stale", "errors": "0+2x10 stale", "successes": "0+1x10 stale"},
    ("b", "b2"): {"requests": "0+3x20", "errors": "0x20", "successes": "0+2x20"},
    ("b", "b3"): {"requests": "0+4x5 0+4x14", "errors": "0x20", "successes": "0x20"},
}
METRICS = {"requests": "flowline_request_latency_seconds_count", "errors": "flowline_prediction_errors_total",
           "successes": "flowline_outcomes_total"}
EXPECTED = {"requests": {"a": 200, "b": 30 + 60 + 76}, "errors": {"a": 0, "b": 20}, "successes": {"a": 60, "b": 50},
            "outcomes": {"a": 60, "b": 50 + 9 * 20}}


def series_file() -> dict:
    inputs = []
    for (version, pod), values in SERIES.items():
        labels = POD.format(version=version, pod=pod)
        for what, metric in METRICS.items():
            outcome = ', outcome="success"' if what == "successes" else ""
            inputs.append({"series": f"{metric}{{{labels}{outcome}}}", "values": values[what]})
    inputs.append({"series": 'flowline_prediction_errors_total{namespace="other", model_name="churn", '
                             'model_version="b", pod="x1"}', "values": "0+100x20"})
    inputs.append({"series": 'flowline_outcomes_total{namespace="shop", model_name="churn", model_version="b", '
                             'pod="app1", outcome="success"}', "values": "0+100x20"})
    inputs.append({"series": 'flowline_outcomes_total{namespace="flowline", model_name="churn", model_version="b", '
                             'pod="b2", outcome="failure"}', "values": "0+9x20"})
    # The window starts before the first sample, so increase() is not extrapolated past it.
    queries = arm_queries("churn", "flowline", "1500s")
    tests = [{"expr": queries[what], "eval_time": "20m",
              "exp_samples": [{"labels": f'{{model_version="{version}"}}', "value": value}
                              for version, value in by_version.items()]}
             for what, by_version in EXPECTED.items()]
    return {"rule_files": [], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": inputs, "promql_expr_test": tests}]}


def test_counts_keep_departed_pods_and_restarts_and_leave_other_namespaces_out(promtool: str, tmp_path: Path):
    (tmp_path / "canary_test.yaml").write_text(yaml.safe_dump(series_file(), sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", "canary_test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def promtool_test(tmp_path: Path, promtool: str, inputs: list[dict], tests: list[dict]) -> None:
    (tmp_path / "canary_test.yaml").write_text(yaml.safe_dump(
        {"rule_files": [], "evaluation_interval": "1m",
         "tests": [{"interval": "1m", "input_series": inputs, "promql_expr_test": tests}]}, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", "canary_test.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_both_arms_are_counted_from_when_the_canary_was_first_seen(promtool: str, tmp_path: Path):
    """Champion a served 10 requests a minute from 0 (3 good outcomes and 7 bad a minute); canary b was first
    scraped at 10m. At 20m each arm counts only what happened since about 10m: the champion's 100 requests before
    the canary existed are not its experiment (they were counted, as the value since its process started)."""
    series = {("a", "a1"): {"requests": "0+10x20", "successes": "0+3x20", "failures": "0+7x20", "created": "5x20"},
              ("b", "b1"): {"requests": "_x10 2+3x10", "successes": "_x10 1+1x10", "failures": "_x10 0+2x10",
                            "created": "_x10 7x10"}}
    metrics = {"requests": "flowline_request_latency_seconds_count", "successes": "flowline_outcomes_total",
               "failures": "flowline_outcomes_total", "created": "flowline_model_created_timestamp_seconds"}
    inputs = []
    for (version, pod), values in series.items():
        for what, metric in metrics.items():
            outcome = {"successes": ', outcome="success"', "failures": ', outcome="failure"'}.get(what, "")
            inputs.append({"series": f"{metric}{{{POD.format(version=version, pod=pod)}{outcome}}}",
                           "values": values[what]})
    window = comparison_window(first_seen=600, lookback_seconds=1200, now=1200)
    assert window == "611s"  # a step (10 s) and a second before the canary's first sample, which then counts
    queries = arm_queries("churn", "flowline", window)
    # The champion's count starts at its last sample before the window (9m): a scrape interval early at most.
    expected = {first_seen_query("churn", "flowline", 1200): {"a": 0, "b": 600},
                queries["requests"]: {"a": 200 - 90, "b": 32},
                queries["successes"]: {"a": 60 - 27, "b": 11},
                queries["outcomes"]: {"a": 200 - 90, "b": 11 + 20}}
    promtool_test(tmp_path, promtool, inputs, [
        {"expr": expr, "eval_time": "20m",
         "exp_samples": [{"labels": f'{{model_version="{version}"}}', "value": value} for version, value in by.items()]}
        for expr, by in expected.items()])
