"""The evaluation report (Markdown), for the evaluate step's dashboard output and the package's
reports/evaluation.md, which is written from the decided evaluation (after the bias step's fairness gates).

In the core, as both steps write it and a step imports only the core and its own folder.
"""

from __future__ import annotations

from flowline.fairness_summary import thresholds
from flowline.use_case import UseCase, gate_bounds


def report_markdown(report: dict, use_case: UseCase) -> str:
    """The evaluation for the Kubeflow dashboard: test metrics, gates, champion/challenger, and the
    confusion matrix (binary) or the value by decile of prediction (regression).

    `report` is the evaluate step's (its decision on the quality gates only, said to be subject to the bias
    step's fairness gates) or the decided one, with `fairness` (the package's, whose decision is final)."""
    lines = [f"### Evaluation: {use_case.name} ({report['test_rows']} test rows)", "",
             "| metric | value | 95 % interval |", "|---|---|---|"]
    intervals = report["confidence_intervals"]
    lines += [f"| {name} | {value:,.4f} | {intervals[name][0]:,.4f} to {intervals[name][1]:,.4f} |"
              for name, value in report["metrics"].items()]
    lines += ["", "| gate | value | bounds | decision |", "|---|---|---|---|"]
    for name, gate in report["gates"].items():
        lines.append(f"| {name} | {gate['value']:.4f} | {gate_bounds(gate)} | {'pass' if gate['passed'] else 'FAIL'} |")
    decision = report["champion_challenger"]
    if "fairness" in report:
        fairness = report["fairness"]
        failed = [attribute for attribute, result in fairness["attributes"].items() if result["gate"] != "pass"]
        shown = ("pass" if fairness["passed"] else "FAIL: " + ", ".join(failed)) if fairness["attributes"] else \
            fairness.get("note", "none")
        lines += ["", f"**Fairness gates (bias step):** {shown}",
                  "", f"**Champion/challenger:** {decision['decision']}: {decision['reason']}", ""]
    else:
        lines += ["", f"**Champion/challenger, on the quality gates only:** {decision['decision']}: "
                      f"{decision['reason']} (subject to the bias step's fairness gates: a failed one keeps the "
                      "champion)", ""]
    if use_case.task == "binary":
        (tn, fp), (fn, tp) = report["confusion_matrix"]
        negative, positive = report["classes"]
        costs = use_case.costs
        flagged, rows = tp + fp, tn + fp + fn + tp
        lines += [f"**At the cost-optimal threshold {report['threshold']:.4f}:** {tp} of the {tp + fn} positives "
                  f"({positive!r}) flagged, {fp} false alarms among the {tn + fp} others ({negative!r}): "
                  f"{flagged} of {rows} rows flagged ({flagged / rows:.1%}, the alert "
                  f"rate); test cost {report['test_cost_at_threshold']:,.0f}, at the use case's costs: a missed "
                  f"positive {costs.false_negative:g}, a false alarm {costs.false_positive:g}, a caught positive "
                  f"{costs.true_positive:g}."]
        lines += ["", served_decisions_line(report)]
    else:
        lines += ["**Value by decile of prediction** (10: the highest predicted)", "",
                  "| decile | rows | mean predicted | mean actual | share of actual |", "|---|---|---|---|---|"]
        lines += [f"| {r['decile']} | {r['rows']} | {r['mean_predicted']:.2f} | {r['mean_actual']:.2f} | "
                  f"{r['share_of_actual']:.1%} |" for r in report["deciles"]["table"]]
        if report.get("segments"):
            shown = ", ".join(f"{name} from decile {start}" for name, start in
                              sorted(report["segments"].items(), key=lambda item: -item[1]))
            lines += ["", f"**Served segments:** {shown}."]
    return "\n".join(lines) + "\n"


def served_decisions_line(report: dict) -> str:
    """Which threshold the served decisions use: the metrics at a threshold are the single threshold's, and the bias
    step's fairness mitigation can serve per-group thresholds instead (decided after evaluate)."""
    if "fairness" not in report:
        return ("**Served decisions:** at this single threshold, unless the bias step's fairness mitigation serves "
                "per-group thresholds (its report and the model card say which).")
    rule = report["fairness"].get("mitigation")
    if rule is None:
        return "**Served decisions:** at this single threshold for every row."
    if rule["randomized"]:
        return ("**Served decisions:** a randomised per-group rule (fairness mitigation), not this threshold: the "
                "metrics at a threshold above are the single threshold's; the fairness report gives the served ones.")
    served = thresholds(report["fairness"])
    shown = ", ".join(f"{key} {value:.4f}" for key, value in served.items() if key != "*")
    return (f"**Served decisions:** per-group thresholds (fairness mitigation): {shown}, {served['*']:.4f} for "
            "every other row. The metrics at a threshold above are the single threshold's; the fairness report and "
            "the model card give the served decisions' outcomes.")
