"""Metric names in PromQL, and every PromQL expression flowline's monitoring uses.

`metric_names` finds the series a PromQL expression reads, without a PromQL parser: it drops
strings, comments, Grafana variables, range and subquery brackets, offsets, numbers and
durations, then keeps the identifiers that are neither keywords nor function calls, nor label
names in `{...}` matchers or `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` lists.
`selectors` gives the same selectors with their label matchers.

`monitoring_exprs` lists the expressions of the PrometheusRule and of the Grafana dashboards,
and `exported_names_used` the metric names among them that a target must export (recorded
series left out), so that tests can check them against what the runtime really serves.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Iterator, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "kustomize" / "base" / "monitoring"
PROMETHEUS_RULE = MONITORING / "prometheus-rule.yaml"
DASHBOARDS = MONITORING / "dashboards"

# Keywords that are followed by a parenthesised list of label names.
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Aggregation operators are keywords too: `sum by (le) (...)` has no '(' right after `sum`.
_AGGREGATORS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
_KEYWORDS = _LABEL_LIST_KEYWORDS | _AGGREGATORS | {"bool", "and", "or", "unless", "offset", "atan2"}
_NUMBER_WORDS = {"inf", "nan"}

_STRING = r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`"""
_TOKEN = re.compile(
    rf"""
      (?P<string>{_STRING})
    | (?P<comment>\#[^\n]*)
    | (?P<variable>\$\{{[^}}]*\}}|\$\w+|\[\[\w+\]\])
    | (?P<matchers>\{{(?:{_STRING}|[^}}"'`])*\}})
    | (?P<range>\[[^\]]*\])
    | (?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*\b)
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<identifier>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<open>\()
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_MATCHER = re.compile(rf"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*({_STRING})")


class Matcher(NamedTuple):
    """One label matcher of a selector, such as `code=~"5.."`."""

    label: str
    op: str
    value: str


class Selector(NamedTuple):
    """One vector selector: the metric name and its label matchers."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(m.label for m in self.matchers)


class PromQLExpr(NamedTuple):
    """A PromQL expression and where it comes from (a rule, a dashboard panel or variable)."""

    source: str
    expr: str


def selectors(expr: str) -> list[Selector]:
    """The vector selectors in a PromQL expression, in order of appearance."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    found: list[Selector] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        next_kind, next_text = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        word = text.lower()
        if kind == "identifier" and word in _LABEL_LIST_KEYWORDS:
            i = _after_label_list(tokens, i + 1)
        elif kind == "identifier" and not (word in _KEYWORDS or word in _NUMBER_WORDS or next_kind == "open"):
            found.append(Selector(text, _matchers(next_text) if next_kind == "matchers" else ()))
            i += 2 if next_kind == "matchers" else 1
        else:
            if kind == "matchers":  # braces with no name before them: {__name__="..."}
                matchers = _matchers(text)
                names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
                if names:
                    found.append(Selector(names[0], tuple(m for m in matchers if m.label != "__name__")))
            i += 1
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (recorded series included)."""
    return {selector.name for selector in selectors(expr)}


def _after_label_list(tokens: list[tuple[str | None, str]], i: int) -> int:
    """The index after the `( ... )` label list starting at `i`; `i` when there is none."""
    if i < len(tokens) and tokens[i][0] == "open":
        while i < len(tokens) and tokens[i][1] != ")":
            i += 1
        return i + 1
    return i


def _matchers(braces: str) -> tuple[Matcher, ...]:
    """The matchers of a `{...}` list, with their values unquoted."""
    return tuple(Matcher(label, op, _unquote(value)) for label, op, value in _MATCHER.findall(braces))


def _unquote(literal: str) -> str:
    """A PromQL string literal's value: backquoted strings are raw, the others have escapes."""
    return literal[1:-1] if literal.startswith("`") else ast.literal_eval(literal)


def rule_groups(path: Path = PROMETHEUS_RULE) -> list[dict]:
    """The rule groups of the PrometheusRule: what a Prometheus rules file holds."""
    document = yaml.safe_load(path.read_text())
    return document["spec"]["groups"]


def rules(path: Path = PROMETHEUS_RULE) -> list[dict]:
    """Every alerting and recording rule of the PrometheusRule, groups flattened."""
    return [rule for group in rule_groups(path) for rule in group["rules"]]


def recorded_names(path: Path = PROMETHEUS_RULE) -> set[str]:
    """The series the recording rules write; Prometheus makes them, no target exports them."""
    return {rule["record"] for rule in rules(path) if "record" in rule}


def rule_exprs(path: Path = PROMETHEUS_RULE) -> list[PromQLExpr]:
    """The expression of every rule, named by its alert or recorded series."""
    return [
        PromQLExpr(f"{path.name}: {rule.get('alert') or rule['record']}", str(rule["expr"]))
        for rule in rules(path)
    ]


def dashboard_paths(folder: Path = DASHBOARDS) -> list[Path]:
    """The Grafana dashboard files, in name order."""
    return sorted(folder.glob("*.json"))


def dashboard_exprs(path: Path) -> list[PromQLExpr]:
    """The PromQL of a Grafana dashboard: panel targets and query variables.

    A variable's `label_values(selector, label)` or `query_result(expr)` yields the PromQL
    inside; `label_values(label)` reads no particular metric and yields nothing.
    """
    dashboard = json.loads(path.read_text())
    found = [
        PromQLExpr(f"{path.name}: panel {panel.get('title')!r} target {target.get('refId')}", target["expr"])
        for panel in iter_panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        inner = _variable_promql(query)
        if inner:
            found.append(PromQLExpr(f"{path.name}: variable {variable.get('name')!r}", inner))
    return found


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """A dashboard's panels, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def _variable_promql(query: str) -> str | None:
    """The PromQL inside a query variable's `label_values(...)` or `query_result(...)`."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*", query, re.DOTALL)
    if match:
        return match.group(1)
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.DOTALL)
    return match.group(1) if match else None


def monitoring_exprs() -> list[PromQLExpr]:
    """Every PromQL expression in the PrometheusRule and the dashboards."""
    found = rule_exprs()
    for path in dashboard_paths():
        found.extend(dashboard_exprs(path))
    return found


def exported_names_used() -> set[str]:
    """Every metric name the rules and dashboards read that a target must export.

    Recorded series are left out; histogram series keep their `_bucket`/`_sum`/`_count`
    suffix and counters their `_total`, exactly as they appear on /metrics.
    """
    names = set().union(*(metric_names(e.expr) for e in monitoring_exprs()))
    return names - recorded_names()
