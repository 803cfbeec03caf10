"""The canary controller's Prometheus queries, evaluated by the real promtool on series a cluster produces: a
pod scaled away, a container restarted in place, the same model in another namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from flowline.canary import arm_queries

POD = 'namespace="flowline", model_name="churn", model_version="{version}", pod="{pod}"'
# One sample a minute from 0 to 20m. Canary b's pod b1 answered 30 requests, 20 of them failed, and was scaled
# away at 10m; b2 served on; b3's container restarted at 6m (20 requests before, 56 after). The same model
# in another namespace failed a hundred times a minute: not this InferenceService's.
SERIES = {
    ("a", "a1"): {"requests": "0+10x20", "errors": "0x20", "successes": "0+3x20"},
    ("b", "b1"): {"requests": "0+3x10 stale", "errors": "0+2x10 stale", "successes": "0+1x10 stale"},
    ("b", "b2"): {"requests": "0+3x20", "errors": "0x20", "successes": "0+2x20"},
    ("b", "b3"): {"requests": "0+4x5 0+4x14", "errors": "0x20", "successes": "0x20"},
}
METRICS = {"requests": "flowline_request_latency_seconds_count", "errors": "flowline_prediction_errors_total",
           "successes": "flowline_outcomes_total"}
EXPECTED = {"requests": {"a": 200, "b": 30 + 60 + 76}, "errors": {"a": 0, "b": 20}, "successes": {"a": 60, "b": 50}}


def series_file() -> dict:
    inputs = []
    for (version, pod), values in SERIES.items():
        labels = POD.format(version=version, pod=pod)
        for what, metric in METRICS.items():
            outcome = ', outcome="success"' if what == "successes" else ""
            inputs.append({"series": f"{metric}{{{labels}{outcome}}}", "values": values[what]})
    inputs.append({"series": 'flowline_prediction_errors_total{namespace="other", model_name="churn", '
                             'model_version="b", pod="x1"}', "values": "0+100x20"})
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
