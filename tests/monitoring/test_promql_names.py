"""promql_names: metric names out of PromQL, and the names the monitoring uses against the documented ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from promql_names import (
    Matcher,
    Selector,
    dashboard_exprs,
    dashboard_paths,
    exported_names_used,
    iter_panels,
    metric_names,
    monitoring_exprs,
    recorded_names,
    rules,
    selectors,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('flowline_model_info{model_name="churn"}', {"flowline_model_info"}),
        ("model:flowline_http_error_ratio:rate5m > 0.05", {"model:flowline_http_error_ratio:rate5m"}),
        # functions and aggregations are not metrics, nor the label lists of by/without
        ("sum by (namespace, model_name, le) (rate(a_bucket[5m]))", {"a_bucket"}),
        ("sum(rate(a_bucket[5m])) by (le)", {"a_bucket"}),
        ("max without (pod, instance) (b)", {"b"}),
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))", {"a_bucket"}),
        ("SUM BY (le) (a) AND b", {"a", "b"}),
        ("count by (m) (count by (m, v) (info)) > 1", {"info"}),
        ("topk(3, a) or bottomk(2, b)", {"a", "b"}),
        ("count_values(\"version\", a)", {"a"}),
        # vector matching keywords and their label lists
        ("a / on (pod) group_left (feature, x) b", {"a", "b"}),
        ("a < ignoring (feature) group_left () (b / 100)", {"a", "b"}),
        ("a * on () group_right c", {"a", "c"}),
        ("a > bool 1 unless b and c or d", {"a", "b", "c", "d"}),
        ("a atan2 b", {"a", "b"}),
        # ranges, subqueries, offsets, @, durations and numbers
        ("increase(a_total[1h] offset 1d)", {"a_total"}),
        ("a offset 5m30s", {"a"}),
        ("max_over_time(rate(a[5m])[1h:1m])", {"a"}),
        ("a @ 1609746000", {"a"}),
        ("a @ start()", {"a"}),
        ("a > 1e-3 and b < 0x1F and c > .5 and d > 1.5E+2", {"a", "b", "c", "d"}),
        ("a > Inf or b != NaN or c > -inf", {"a", "b", "c"}),
        ("time() - a > 90 * 86400", {"a"}),
        ("vector(0)", set()),
        # strings, label names inside braces, __name__ matchers
        ('label_replace(a, "dst", "$1 b c", "src", "(.*)")', {"a"}),
        ("a{code=~'5..', le!=\"x}\", model_name!~`y|z`}", {"a"}),
        ('{__name__="a_total", job="j"}', {"a_total"}),
        ("absent({__name__=~\"a.*\"})", set()),
        # comments and Grafana variables
        ("a # b is not read\n+ c", {"a", "c"}),
        ('rate(a{model_name=~"$model"}[$__rate_interval])', {"a"}),
        ("rate(a[${interval}]) + b[[window]] * $scale", {"a", "b"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_selectors_keep_matchers_with_unquoted_values() -> None:
    assert selectors('a{code=~"5..", le!=\'x\\\'y\'} / {__name__="b", job=`j\\n`}') == [
        Selector("a", (Matcher("code", "=~", "5.."), Matcher("le", "!=", "x'y"))),
        Selector("b", (Matcher("job", "=", "j\\n"),)),
    ]
    assert Selector("a", (Matcher("code", "=", "200"),)).labels == {"code"}


def test_dashboard_exprs_reads_targets_nested_panels_and_variables(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({
        "panels": [
            {"type": "row", "title": "r", "panels": [{"title": "inner", "targets": [{"refId": "A", "expr": "a"}]}]},
            {"title": "outer", "targets": [{"refId": "A", "expr": "b"}, {"refId": "B", "expr": ""}]},
        ],
        "templating": {"list": [
            {"name": "model", "type": "query", "query": "label_values(c{x=\"1\", y=\"2\"}, model_name)"},
            {"name": "v", "type": "query", "query": {"query": "query_result(topk(1, d))", "refId": "x"}},
            {"name": "label_only", "type": "query", "query": "label_values(namespace)"},
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
        ]},
    }))
    assert [e.expr for e in dashboard_exprs(path)] == ["a", "b", 'c{x="1", y="2"}', "topk(1, d)"]


def test_monitoring_exprs_covers_every_rule_and_dashboard_target() -> None:
    sources = [e.source for e in monitoring_exprs()]
    assert len(sources) == len(set(sources))
    targets = sum(
        len(panel.get("targets", []))
        for path in dashboard_paths()
        for panel in iter_panels(json.loads(path.read_text())["panels"])
    )
    variables = sum(1 for path in dashboard_paths() for e in dashboard_exprs(path) if ": variable " in e.source)
    assert len(sources) == len(rules()) + targets + variables


# What the runtime exports (the metrics contract of the model server and the drift monitor):
# exact names as on /metrics, and the labels of each (target labels come on top).
DOCUMENTED: dict[str, set[str]] = {
    "flowline_predictions_total": {"model_name", "model_version", "decision"},
    "flowline_request_latency_seconds_bucket": {"model_name", "model_version", "le"},
    "flowline_request_latency_seconds_sum": {"model_name", "model_version"},
    "flowline_request_latency_seconds_count": {"model_name", "model_version"},
    "flowline_invalid_inputs_total": {"model_name", "reason"},
    "flowline_prediction_errors_total": {"model_name", "model_version", "error"},
    "flowline_http_requests_total": {"model_name", "model_version", "code"},
    "flowline_http_request_duration_seconds_bucket": {"model_name", "le"},
    "flowline_http_request_duration_seconds_sum": {"model_name"},
    "flowline_http_request_duration_seconds_count": {"model_name"},
    "flowline_model_info": {"model_name", "model_version", "use_case", "task"},
    "flowline_model_created_timestamp_seconds": {"model_name", "model_version"},
    "flowline_model_quality": {"model_name", "model_version", "metric"},
    "flowline_model_gates_passed": {"model_name", "model_version"},
    "flowline_model_reloads_total": {"model_name", "result"},
    "flowline_online_store_reseeded_total": {"model_name", "definition"},
    "flowline_out_of_profile_rows_total": {"model_name", "column", "reason"},
    **{
        f"request_{step}_seconds{suffix}": {"model_name"} | ({"le"} if suffix == "_bucket" else set())
        for step in ("preprocess", "predict", "postprocess", "explain")
        for suffix in ("_bucket", "_sum", "_count")
    },
    "process_resident_memory_bytes": set(),
    "flowline_memory_limit_bytes": set(),
    "flowline_memory_working_set_bytes": set(),
    "process_start_time_seconds": set(),
    "process_cpu_seconds_total": set(),
    "process_open_fds": set(),
    "process_max_fds": set(),
    "flowline_gc_collections_total": {"generation"},
    "flowline_gc_pause_seconds_total": {"generation"},
    "flowline_drift_events_total": {"model_name"},
    "flowline_drift_invalid_events_total": {"model_name", "reason"},
    "flowline_drift_window_size": {"model_name"},
    "flowline_drift_window_fill": {"model_name"},
    "flowline_drift_threshold": {"model_name"},
    "flowline_drift_p_value": {"model_name", "feature"},
    "flowline_drift_detected": {"model_name"},
    "flowline_drift_tests_total": {"model_name", "result"},
    "flowline_drift_last_test_timestamp_seconds": {"model_name"},
    "flowline_pipeline_runs_total": {"use_case", "status"},
    "flowline_pipeline_last_run_timestamp_seconds": {"use_case", "status"},
}
TARGET_LABELS = {"namespace", "pod", "job", "instance"}
# The values a label can take, where the contract fixes them.
LABEL_VALUES: dict[tuple[str, str], set[str]] = {
    ("flowline_predictions_total", "decision"): {"positive", "negative", "value"},
    ("flowline_model_reloads_total", "result"): {"loaded", "refused"},
    ("flowline_out_of_profile_rows_total", "reason"): {"below_training_min", "above_training_max", "unseen_category"},
    ("flowline_drift_tests_total", "result"): {"drift", "no_drift"},
    ("flowline_pipeline_runs_total", "status"): {"succeeded", "failed"},
    ("flowline_pipeline_last_run_timestamp_seconds", "status"): {"succeeded", "failed"},
    ("flowline_model_quality", "metric"): {
        "roc_auc", "auprc", "log_loss", "brier", "precision", "recall", "f1", "accuracy",
        "mae", "rmse", "r2", "spearman",
    },
}


def test_every_metric_used_is_documented() -> None:
    assert exported_names_used() - DOCUMENTED.keys() == set()


def test_every_recorded_series_used_is_recorded() -> None:
    used = set().union(*(metric_names(e.expr) for e in monitoring_exprs()))
    assert {name for name in used if ":" in name} <= recorded_names()


def test_matchers_use_documented_labels_and_values() -> None:
    problems = []
    for expr in monitoring_exprs():
        for selector in selectors(expr.expr):
            if selector.name not in DOCUMENTED:
                continue
            for label, op, value in selector.matchers:
                if label not in DOCUMENTED[selector.name] | TARGET_LABELS:
                    problems.append(f"{expr.source}: {selector.name} has no label {label}")
                allowed = LABEL_VALUES.get((selector.name, label))
                if allowed is None or op not in ("=", "=~"):
                    continue
                # Check literals and alternations of literals; other regexes are left alone.
                values = [value] if op == "=" else value.split("|")
                if all(re.fullmatch(r"\w+", v) for v in values):
                    problems.extend(
                        f"{expr.source}: {selector.name}{{{label}={v!r}}} is never exported"
                        for v in values if v not in allowed
                    )
    assert not problems, "\n".join(problems)
