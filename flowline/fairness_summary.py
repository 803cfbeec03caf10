"""The bias step's decision side by side, as plain data and table rows, for every place that shows it.

The run summary, the model card and the fairness report show the same things from the bias
step's `fairness` document: each gate at the single threshold and with per-group thresholds
(out of fold, where they were decided, and on test, where they are reported), the cost and
balanced accuracy of both, the groups' thresholds, and whether the mitigation was applied and
why, and the chart of each attribute's group rates on test. The bias step's terminal lines
(fairness.fairness_lines) say the out-of-fold part in prose. No fairlearn here, so the model card
and the run summary import it cheaply.
"""

from __future__ import annotations

from typing import Optional

from flowline.use_case import gate_bounds

OPTIONS = ("single_threshold", "mitigated")
SAMPLES = ("out_of_fold", "test")
SHOWN_OUTCOMES = ("expected_cost_per_1000", "balanced_accuracy", "recall", "selection_rate")
CHART_METRICS = ("selection_rate", "true_positive_rate", "false_positive_rate")  # by group, in the charts
GATE_HEADERS = ["attribute", "gate", "single threshold (out of fold)", "per-group (out of fold)",
                "single threshold (test)", "per-group (test)", "bounds", "served"]
OUTCOME_HEADERS = ["outcome", "single threshold (out of fold)", "per-group (out of fold)",
                   "single threshold (test)", "per-group (test)"]


def served_option(fairness: dict) -> dict:
    """The option whose decisions are served: the per-group thresholds when applied, else the single threshold."""
    return fairness["mitigated"] if fairness["mitigation"] else fairness["single_threshold"]


def gate_values(fairness: dict) -> dict[str, dict]:
    """Per attribute and gated metric: its value under each option (None: not fitted) on each sample, its bounds
    and the served decisions' verdict."""
    found: dict[str, dict] = {}
    for attribute, result in fairness["attributes"].items():
        for metric, gate in result["gates"].items():
            found.setdefault(attribute, {})[metric] = {
                **{option: None if fairness[option] is None else
                   {sample: fairness[option][sample]["attributes"][attribute]["gates"][metric]["value"]
                    for sample in SAMPLES} for option in OPTIONS},
                "bounds": gate_bounds(gate), "served": "pass" if gate["passed"] else "FAIL"}
    return found


def gate_rows(summary: dict) -> list[list]:
    """From `fairness_summary`: one row per gated metric, its value under both options on both samples, its
    bounds and the served verdict."""
    return [[attribute, metric, *("" if gate[option] is None else gate[option][sample]
                                  for sample in SAMPLES for option in OPTIONS), gate["bounds"], gate["served"]]
            for attribute, gates in summary["gates"].items() for metric, gate in gates.items()]


def outcome_rows(summary: dict) -> list[list]:
    """From `fairness_summary`: cost, balanced accuracy, recall and selection rate under both options on both
    samples."""
    outcomes = summary["outcomes"]
    return [[name, *("" if outcomes[option] is None else outcomes[option][sample][name]
                     for sample in SAMPLES for option in OPTIONS)] for name in SHOWN_OUTCOMES]


def threshold_rows(summary: dict) -> list[list]:
    """From `fairness_summary`: each group's served threshold."""
    return [["every other row" if key == "*" else key, value] for key, value in summary["thresholds"].items()]


def thresholds(fairness: dict) -> dict[str, float]:
    """The served threshold of each group ("*" for every other row), or the single threshold for all."""
    rule = fairness["mitigation"]
    if rule is None or rule["randomized"]:
        return {"*": fairness["threshold"]}
    return {**{key: group["threshold"] for key, group in rule["groups"].items()}, "*": rule["threshold"]}


def fairness_summary(fairness: dict) -> Optional[dict]:
    """What the bias step decided, compactly: for the run summary and the model card; None without attributes."""
    if not fairness.get("attributes"):
        return None
    mitigated = fairness["mitigated"]
    return {
        "applied": fairness["applied"], "reason": fairness["reason"], "decided_on": fairness["decided_on"],
        "attributes": fairness["failing"],
        "constraint": mitigated["rule"]["constraint"] if mitigated else None,
        "randomized": bool(mitigated and mitigated["rule"]["randomized"]),
        "thresholds": thresholds(fairness),
        "gates": gate_values(fairness),
        "outcomes": {option: None if fairness[option] is None else
                     {sample: fairness[option][sample]["outcomes"] for sample in SAMPLES} for option in OPTIONS},
    }


def groups_on_test(fairness: dict) -> dict[str, dict]:
    """Per attribute, each group's CHART_METRICS on the test rows under each option (None: not fitted), for
    the model card's plot."""
    return {attribute: {option: None if fairness[option] is None else
                        {group: {name: values[name] for name in CHART_METRICS}
                         for group, values in fairness[option]["test"]["attributes"][attribute]["by_group"].items()}
                        for option in OPTIONS}
            for attribute in fairness.get("attributes", {})}


def _charted(rate: Optional[float]) -> float:
    """A rate as a bar's height: none drawn (NaN) for an undefined one."""
    return float("nan") if rate is None else rate


def group_chart(attribute: str, single: dict, mitigated: Optional[dict]) -> str:
    """Selection rate, TPR and FPR by group on the test rows (`single` and `mitigated` map each group to its
    metrics), under one threshold and, when fitted, per-group thresholds side by side, as an embedded PNG."""
    import numpy as np

    from flowline import reports

    groups = list(single)
    figure, axes = reports.subplots(1, len(CHART_METRICS), figsize=(4 * len(CHART_METRICS), 3), sharey=True)
    positions = np.arange(len(groups))
    for axis, name in zip(axes, CHART_METRICS):
        axis.bar(positions - (0.2 if mitigated else 0), [_charted(single[g][name]) for g in groups],
                 0.4 if mitigated else 0.6, label="single threshold", color="#bbbbbb")
        if mitigated:
            axis.bar(positions + 0.2, [_charted(mitigated[g][name]) for g in groups], 0.4,
                     label="per-group thresholds", color="#1f77b4")
        axis.set_xticks(positions, groups, rotation=30, ha="right")
        axis.set_title(name.replace("_", " "))
        axis.set_ylim(0, 1)
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(f"{attribute} (test rows)", y=1.05)
    return reports.figure_image(figure, f"{attribute}: selection rate, TPR and FPR by group on the test rows")
