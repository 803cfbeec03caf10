"""The bias step's reports: Markdown for the Kubeflow run page, HTML with a chart per attribute."""

from __future__ import annotations

import numpy as np

from flowline import reports
from flowline.components.bias.fairness import GROUP_METRICS
from flowline.pipelines.use_case import FAIRNESS_METRICS, UseCase, gate_bounds


def _gap_rows(result: dict, before: dict | None) -> list[list]:
    rows = []
    for metric in FAIRNESS_METRICS:
        gate = result["gates"].get(metric)
        row = [metric, *([before[metric]] if before else []), result[metric],
               gate_bounds(gate) if gate else "", ("pass" if gate["passed"] else "FAIL") if gate else "not gated"]
        rows.append(row)
    return rows


def _group_rows(result: dict) -> list[list]:
    return [[group, values["rows"], *(values[name] for name in GROUP_METRICS)]
            for group, values in result["by_group"].items()]


def _tradeoff_rows(fairness: dict) -> list[list]:
    outcomes = fairness["outcomes"]
    return [[name, before, outcomes["mitigated"][name]] for name, before in outcomes["single_threshold"].items()]


def _summary_lines(fairness: dict) -> list[str]:
    if not fairness["attributes"]:
        return ["No sensitive attributes are declared for this use case: nothing to judge."]
    verdict = "every fairness gate passed" if fairness["passed"] else "a fairness gate FAILED"
    lines = [f"Decisions on the test rows: {verdict}."]
    mitigation = fairness["mitigation"]
    if mitigation:
        lines.append(f"A gate failed at the single threshold, so per-group thresholds (fairlearn ThresholdOptimizer, "
                     f"{mitigation['constraint']}, fitted on train's out-of-fold scores) were applied for "
                     f"{', '.join(mitigation['attributes'])}; the package serves them.")
    return lines


def _markdown_cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _markdown_row(values) -> str:
    return "| " + " | ".join(_markdown_cell(v) for v in values) + " |"


def fairness_markdown(fairness: dict, use_case: UseCase) -> str:
    lines = [f"### Fairness: {use_case.name}", ""]
    for line in _summary_lines(fairness):
        lines += [line, ""]
    mitigated = bool(fairness["mitigation"])
    for attribute, result in fairness["attributes"].items():
        before = fairness["before_mitigation"][attribute] if mitigated else None
        headers = ["metric", *(["single threshold"] if mitigated else []), "served", "bounds", "gate"]
        lines += [f"#### {attribute}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += [_markdown_row(row) for row in _gap_rows(result, before)]
        lines += ["", "| group | rows | " + " | ".join(GROUP_METRICS) + " |", "|" + "---|" * (len(GROUP_METRICS) + 2)]
        lines += [_markdown_row(row) for row in _group_rows(result)]
        if "note" in result:
            lines += ["", result["note"]]
        lines.append("")
    if mitigated:
        lines += ["#### Fairness against accuracy", "", "| outcome | single threshold | mitigated |", "|---|---|---|"]
        lines += [f"| {name} | {before:,.4f} | {after:,.4f} |" for name, before, after in _tradeoff_rows(fairness)]
    return "\n".join(lines) + "\n"


def _group_chart(attribute: str, result: dict, before: dict | None) -> str:
    groups = list(result["by_group"])
    names = ["selection_rate", "true_positive_rate", "false_positive_rate"]
    figure, axes = reports.subplots(1, len(names), figsize=(4 * len(names), 3), sharey=True)
    positions = np.arange(len(groups))
    for axis, name in zip(axes, names):
        if before:
            axis.bar(positions - 0.2, [before["by_group"][g][name] for g in groups], 0.4, label="single threshold",
                     color="#bbbbbb")
        axis.bar(positions + (0.2 if before else 0), [result["by_group"][g][name] for g in groups],
                 0.4 if before else 0.6, label="served", color="#1f77b4")
        axis.set_xticks(positions, groups, rotation=30, ha="right")
        axis.set_title(name.replace("_", " "))
        axis.set_ylim(0, 1)
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(attribute, y=1.05)
    return reports.figure_image(figure, f"{attribute}: selection rate, TPR and FPR by group")


def fairness_html(fairness: dict, use_case: UseCase) -> str:
    sections = [f"<p>{reports.escape(line)}</p>" for line in _summary_lines(fairness)]
    mitigated = bool(fairness["mitigation"])
    for attribute, result in fairness["attributes"].items():
        before = fairness["before_mitigation"][attribute] if mitigated else None
        headers = ["metric", *(["single threshold"] if mitigated else []), "served", "bounds", "gate"]
        sections += [f"<h2>{reports.escape(attribute)}</h2>", reports.table(headers, _gap_rows(result, before)),
                     reports.table(["group", "rows", *GROUP_METRICS], _group_rows(result)),
                     _group_chart(attribute, result, before)]
        if "note" in result:
            sections.append(f"<p>{reports.escape(result['note'])}</p>")
    if mitigated:
        sections += ["<h2>Fairness against accuracy</h2>",
                     reports.table(["outcome", "single threshold", "mitigated"], _tradeoff_rows(fairness))]
    return reports.page(f"Fairness: {use_case.name}", sections)
