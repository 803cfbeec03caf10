"""The bias step's reports: Markdown for the Kubeflow run page, HTML with a chart per attribute.

Both show the single threshold and the per-group thresholds side by side, out of fold
(where the gate and the mitigation were decided) and on test (reported only).
"""

from __future__ import annotations

from flowline import reports
from flowline.components.bias.fairness import GROUP_METRICS
from flowline.fairness_summary import (GATE_HEADERS, OUTCOME_HEADERS, fairness_summary, gate_rows, group_chart,
                                       outcome_rows, served_option, threshold_rows)
from flowline.use_case import UseCase

THRESHOLD_HEADERS = ["group", "threshold"]


def _group_rows(result: dict) -> list[list]:
    return [[group, values["rows"], *("undefined" if values[name] is None else values[name] for name in GROUP_METRICS)]
            for group, values in result["by_group"].items()]


def _summary_lines(fairness: dict) -> list[str]:
    if not fairness["attributes"]:
        return ["No sensitive attributes are declared for this use case: nothing to judge."]
    rows = fairness["decided_on"]
    verdict = "every fairness gate passed" if fairness["passed"] else "a fairness gate FAILED"
    served = ("per-group thresholds" if fairness["mitigation"] else "one threshold for everyone")
    lines = [f"Served decisions: {served}; {verdict}. Gates and mitigation are decided on the "
             f"{rows['out_of_fold_rows']:,} out-of-fold predictions of train + valid; the {rows['test_rows']:,} "
             "test rows only report.",
             f"Mitigation {fairness['reason']}."]
    if fairness["mitigation"] and fairness["mitigation"]["randomized"]:
        lines.append("The rule is randomised (fairness.mitigation.randomized): some decisions are drawn, so two rows "
                     "with one score can get different decisions.")
    return lines


def _served_test(fairness: dict) -> dict:
    """The served decisions' fairness on the test rows."""
    return served_option(fairness)["test"]["attributes"]


def _markdown_cell(value: object) -> str:
    return f"{value:,.4f}" if isinstance(value, float) else str(value)


def _markdown_table(headers: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(_markdown_cell(v) for v in row) + " |" for row in rows), ""]


def fairness_markdown(fairness: dict, use_case: UseCase) -> str:
    lines = [f"### Fairness: {use_case.name}", ""]
    for line in _summary_lines(fairness):
        lines += [line, ""]
    if not fairness["attributes"]:
        return "\n".join(lines)
    summary = fairness_summary(fairness)
    lines += ["#### Gates", "", *_markdown_table(GATE_HEADERS, gate_rows(summary))]
    lines += ["#### Cost and accuracy", "", *_markdown_table(OUTCOME_HEADERS, outcome_rows(summary))]
    lines += ["#### Served thresholds", "", *_markdown_table(THRESHOLD_HEADERS, threshold_rows(summary))]
    for attribute, result in _served_test(fairness).items():
        lines += [f"#### {attribute}: served decisions by group (test)", "",
                  *_markdown_table(["group", "rows", *GROUP_METRICS], _group_rows(result))]
        if "note" in result:
            lines += [result["note"], ""]
    return "\n".join(lines)


def fairness_html(fairness: dict, use_case: UseCase) -> str:
    sections = [f"<p>{reports.escape(line)}</p>" for line in _summary_lines(fairness)]
    if fairness["attributes"]:
        summary = fairness_summary(fairness)
        sections += ["<h2>Gates</h2>", reports.table(GATE_HEADERS, gate_rows(summary)),
                     "<h2>Cost and accuracy</h2>", reports.table(OUTCOME_HEADERS, outcome_rows(summary)),
                     "<h2>Served thresholds</h2>", reports.table(THRESHOLD_HEADERS, threshold_rows(summary))]
    mitigated = fairness.get("mitigated")
    for attribute, result in _served_test(fairness).items() if fairness["attributes"] else ():
        single = fairness["single_threshold"]["test"]["attributes"][attribute]
        sections += [f"<h2>{reports.escape(attribute)}: served decisions by group (test)</h2>",
                     reports.table(["group", "rows", *GROUP_METRICS], _group_rows(result)),
                     group_chart(attribute, single["by_group"],
                                 mitigated["test"]["attributes"][attribute]["by_group"] if mitigated else None)]
        if "note" in result:
            sections.append(f"<p>{reports.escape(result['note'])}</p>")
    return reports.page(f"Fairness: {use_case.name}", sections)
