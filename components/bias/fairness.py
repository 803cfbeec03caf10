"""Fairness of a binary model's decisions per sensitive attribute, its gate, and its mitigation.

For each attribute the rows are grouped by its value (numeric attributes by the use
case's `fairness.bands`), and fairlearn's MetricFrame gives each group's selection rate,
true and false positive rates and precision at the decision. Groups with fewer than
`fairness.min_group_rows` rows are reported but left out of the gaps:

- demographic parity difference: the largest gap in selection rate;
- equalized odds difference: the larger of the largest TPR gap and the largest FPR gap;
- disparate impact ratio: the lowest selection rate over the highest (the four-fifths
  rule asks for >= 0.8).

A group without positives has no true positive rate (without negatives, no false positive rate): it is
reported as undefined and left out of that rate's gap, as the mitigation leaves it out of that rate's band.

Everything that decides is judged on train + valid's out-of-fold predictions (the train
step's `holdout`), never on test: the gate at the single threshold; when it fails and
`fairness.mitigation.enabled`, the per-group thresholds (mitigation.py), fitted on the
attributes that fail; and whether to serve them, only when they bring every gate within
bounds at an expected cost at most `max_cost_increase` above the single threshold's.
Otherwise the run fails its fairness gate, and says what the mitigation would have cost.
The test rows are used once, to report both options side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, selection_rate
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, precision_score

from flowline.components.bias.mitigation import fit_group_thresholds
from flowline.decisions import group_key, rule_name, sensitive_groups
from flowline.decisions import decision_metrics, gate_decisions
from flowline.features.feature_set import FeatureSet
from flowline.models.ensemble import Ensemble
from flowline.use_case import CostSpec, UseCase, gate_bounds

def _precision(y_true, y_pred) -> float:
    return precision_score(y_true, y_pred, zero_division=0)


def _positive_share_among(label: int, y_true, y_pred) -> float:
    """The share decided positive among the rows labelled `label`: NaN, undefined, for a group without such rows
    (fairlearn's rates give 0, which made a group without positives look like one whose positives are all missed)."""
    rows = np.asarray(y_true) == label
    return float(np.mean(np.asarray(y_pred)[rows])) if rows.any() else float("nan")


def _true_positive_rate(y_true, y_pred) -> float:
    return _positive_share_among(1, y_true, y_pred)


def _false_positive_rate(y_true, y_pred) -> float:
    return _positive_share_among(0, y_true, y_pred)


GROUP_METRICS = {"selection_rate": selection_rate, "true_positive_rate": _true_positive_rate,
                 "false_positive_rate": _false_positive_rate, "precision": _precision}
RATES = ("true_positive_rate", "false_positive_rate")  # undefined (None) for a group without positives or negatives


def group_fairness(y: np.ndarray, decisions: np.ndarray, groups: pd.Series, min_rows: int) -> dict:
    """Per-group metrics and the three gaps over the groups with at least `min_rows` rows. A group without
    positives (or negatives) has no true (false) positive rate: None, left out of that rate's gap, and noted."""
    frame = MetricFrame(metrics=GROUP_METRICS, y_true=y, y_pred=decisions.astype(int),
                        sensitive_features=groups.to_numpy())
    counts = groups.value_counts()
    by_group = {str(group): {"rows": int(counts[group]), **{k: None if np.isnan(v) else float(v) for k, v in row.items()}}
                for group, row in frame.by_group.iterrows()}
    compared = [group for group, row in by_group.items() if row["rows"] >= min_rows]
    result = {"by_group": by_group, "compared_groups": compared}
    if len(compared) < 2:
        return {**result, "demographic_parity_difference": 0.0, "equalized_odds_difference": 0.0,
                "disparate_impact_ratio": 1.0,
                "note": f"fewer than two groups have {min_rows} or more rows: nothing to compare"}
    rates = pd.DataFrame([by_group[group] for group in compared], index=compared, dtype=float)
    selection = rates["selection_rate"]
    gap = {name: float(rates[name].max() - rates[name].min()) if rates[name].count() >= 2 else 0.0
           for name in GROUP_METRICS}
    undefined = [f"{group} has no {'positives' if name == 'true_positive_rate' else 'negatives'}"
                 for name in RATES for group in rates.index[rates[name].isna()]]
    return {**result,
            "demographic_parity_difference": gap["selection_rate"],
            "equalized_odds_difference": max(gap["true_positive_rate"], gap["false_positive_rate"]),
            "disparate_impact_ratio": float(selection.min() / selection.max()) if selection.max() > 0 else 1.0,
            **({"note": f"{'; '.join(undefined)}: its rate there is undefined and left out of the gap"}
               if undefined else {})}


def assess(use_case: UseCase, y: np.ndarray, decisions: np.ndarray, rows: pd.DataFrame) -> dict[str, dict]:
    """Each sensitive attribute's fairness at `decisions`, with its gate decisions and verdict."""
    spec = use_case.fairness
    assessed = {}
    for attribute in use_case.sensitive_attributes:
        result = group_fairness(y, decisions, sensitive_groups(rows, attribute, use_case), spec.min_group_rows)
        gates = gate_decisions(result, spec.gates)
        assessed[attribute] = {**result, "gates": gates,
                               "gate": "pass" if all(g["passed"] for g in gates.values()) else "fail"}
    return assessed


def decision_outcomes(y: np.ndarray, decisions: np.ndarray, costs: CostSpec) -> dict[str, float]:
    """What the decisions achieve overall: the accuracy side of the fairness trade-off."""
    positive = decisions.astype(bool)
    decided = decision_metrics(y, positive, costs)
    return {"accuracy": decided["accuracy"],
            "balanced_accuracy": float(balanced_accuracy_score(y, positive)),
            "precision": decided["precision"],
            "recall": decided["recall"],
            "f1": decided["f1"],
            "selection_rate": float(np.mean(positive)),
            "expected_cost_per_1000": decided["expected_cost_per_1000"]}


# The quality gates a threshold decides (evaluate judges them at the single threshold): judged again on the
# decisions served when per-group thresholds replace it.
DECISION_GATES = ("precision", "recall", "f1", "accuracy", "expected_cost_per_1000")


def failed_gates(assessed: dict[str, dict]) -> list[str]:
    """'attribute metric value' for every failed fairness gate, for reasons and logs."""
    return [f"{attribute} {metric} {gate['value']:.3f}" for attribute, result in assessed.items()
            for metric, gate in result["gates"].items() if not gate["passed"]]


def judged(use_case: UseCase, y: np.ndarray, decisions: np.ndarray, rows: pd.DataFrame) -> dict:
    """Fairness per attribute, the overall outcomes of one set of decisions, and their confusion matrix."""
    return {"attributes": assess(use_case, y, decisions, rows),
            "outcomes": decision_outcomes(y, decisions, use_case.costs),
            "confusion_matrix": confusion_matrix(y, decisions.astype(int), labels=[0, 1]).tolist()}


def _gate_changes(before: dict, after: dict) -> str:
    return ", ".join(f"{attribute} {metric} {gate['value']:.3f} -> {after[attribute]['gates'][metric]['value']:.3f}"
                     f" ({gate_bounds(gate)})" for attribute, result in before.items()
                     for metric, gate in result["gates"].items())


def mitigation_verdict(use_case: UseCase, single: dict, mitigated: dict) -> tuple[bool, str]:
    """Whether to serve the mitigation, and why, from the out-of-fold judgements of both options."""
    limit = use_case.fairness.mitigation.max_cost_increase
    before, after = single["outcomes"]["expected_cost_per_1000"], mitigated["outcomes"]["expected_cost_per_1000"]
    increase = after / before - 1 if before > 0 else (0.0 if after == 0 else np.inf)
    trade = (f"{_gate_changes(single['attributes'], mitigated['attributes'])}; expected cost per 1,000 "
             f"{before:,.0f} -> {after:,.0f} ({increase:+.1%}, max_cost_increase {limit:.0%})")
    rule = "a randomised per-group rule" if use_case.fairness.mitigation.randomized else "per-group thresholds"
    if failed_gates(mitigated["attributes"]):
        return False, f"not applied: {rule} would still fail a gate: {trade}"
    if increase > limit:
        return False, f"not applied: {rule} would pass every gate but cost too much: {trade}"
    return True, f"applied: {rule} pass every gate at an acceptable cost: {trade}"


def judge(use_case: UseCase, y: np.ndarray, scores: np.ndarray, threshold: float, rows: pd.DataFrame,
          x: np.ndarray, holdout: pd.DataFrame) -> dict:
    """Gate, fit and choose on `holdout` (train + valid's out-of-fold scores); report both options on the
    test rows (`y`, `scores`, raw `rows`, encoded `x`)."""
    y_oof, s_oof = holdout["label"].to_numpy(), holdout["prediction"].to_numpy()
    single = {"out_of_fold": judged(use_case, y_oof, s_oof >= threshold, holdout),
              "test": judged(use_case, y, scores >= threshold, rows)}
    failing = tuple(attribute for attribute, result in single["out_of_fold"]["attributes"].items()
                    if result["gate"] == "fail")
    spec = use_case.fairness.mitigation
    mitigated, rule, applied = None, None, False
    if not failing:
        reason = "not needed: every fairness gate passes at the single threshold on out-of-fold predictions"
    elif not spec.enabled:
        reason = ("not applied: a fairness gate fails at the single threshold and fairness.mitigation.enabled "
                  "is false")
    else:
        rule = fit_group_thresholds(y_oof, s_oof, group_key(holdout, failing, use_case), failing, use_case, threshold)
        if rule is None:
            reason = (f"not applied: no group has the {use_case.fairness.min_group_rows} out-of-fold rows "
                      "(min_group_rows) to fit a threshold on")
        else:
            draws = np.random.default_rng(use_case.tuning.seed).random(len(y_oof))  # a randomized rule's draws
            mitigated = {"rule": rule.to_dict(),
                         "out_of_fold": judged(use_case, y_oof, rule.decide_with_draws(s_oof, holdout, use_case, draws),
                                               holdout),
                         "test": judged(use_case, y, rule.decide(scores, rows, x, use_case), rows)}
            applied, reason = mitigation_verdict(use_case, single["out_of_fold"], mitigated["out_of_fold"])
    served = mitigated if applied else single
    return {"decided_on": {"out_of_fold_rows": len(y_oof), "test_rows": len(y)},
            "threshold": threshold, "failing": list(failing),
            "single_threshold": single, "mitigated": mitigated,
            "mitigation": rule.to_dict() if applied else None, "applied": applied, "reason": reason,
            "attributes": served["out_of_fold"]["attributes"],
            "passed": all(result["gate"] == "pass" for result in served["out_of_fold"]["attributes"].values())}


def decide_with_fairness(evaluation: dict, fairness: dict, use_case: UseCase) -> dict:
    """The evaluation with its fairness; a failed fairness gate fails the run and keeps the champion. When
    per-group thresholds are served, the quality gates a threshold decides (DECISION_GATES) are judged again on
    the served decisions on test: evaluate judged the single threshold, which then decides no row. A gate they
    fail fails the run and keeps the champion too."""
    decided = {**evaluation, "fairness": fairness}
    reasons = []
    if fairness.get("applied"):  # none without sensitive attributes
        served = fairness["mitigated"]["test"]["outcomes"]
        rejudged = gate_decisions(served, {name: gate for name, gate in use_case.gates.items()
                                           if name in DECISION_GATES})
        decided["gates"] = {**evaluation["gates"], **{name: {**gate, "decisions": "served per-group thresholds"}
                                                      for name, gate in rejudged.items()}}
        # never from failed to passed: evaluate kept the champion without comparing a model that failed a gate
        decided["gates_passed"] = evaluation["gates_passed"] and all(gate["passed"] for gate in rejudged.values())
        failed = [f"{name} {gate['value']:.4g} ({gate_bounds(gate)})" for name, gate in rejudged.items()
                  if not gate["passed"]]
        if failed:
            reasons.append("its served per-group thresholds failed quality gates on test: " + ", ".join(failed))
    if not fairness["passed"]:
        decided["gates_passed"] = False
        reasons.append("the challenger failed its fairness gates: " + ", ".join(failed_gates(fairness["attributes"])))
    if reasons and evaluation["champion_challenger"]["decision"] == "promote":
        decided["champion_challenger"] = {**evaluation["champion_challenger"], "decision": "keep",
                                          "reason": "; ".join(reasons)}
    return decided


def outcome_metrics(decided: dict) -> dict[str, float]:
    """The run's outcome after every gate, quality and fairness, for the dashboard's Metrics (1 or 0): the
    evaluate step's know only the quality gates."""
    return {"gates_passed": float(decided["gates_passed"]),
            "promoted": float(decided["champion_challenger"]["decision"] == "promote")}


def fairness_lines(fairness: dict) -> list[str]:
    """What the bias step decided, for the run's terminal: gates and outcomes of both options, and why."""
    mitigated = fairness["mitigated"]
    lines = []
    for attribute, result in fairness["single_threshold"]["out_of_fold"]["attributes"].items():
        for metric, gate in result["gates"].items():
            after = (f" -> {mitigated['out_of_fold']['attributes'][attribute]['gates'][metric]['value']:.3f} "
                     "mitigated" if mitigated else "")
            lines.append(f"bias: {attribute} {metric} {gate['value']:.3f} at the single threshold{after} "
                         f"({gate_bounds(gate)}, out of fold)")
    mitigated_name = rule_name(bool(mitigated and mitigated["rule"]["randomized"]))
    for name, option in (("single threshold", fairness["single_threshold"]), (mitigated_name, mitigated)):
        if option:
            outcomes = option["out_of_fold"]["outcomes"]
            lines.append(f"bias: {name}: expected cost per 1,000 {outcomes['expected_cost_per_1000']:,.0f}, "
                         f"balanced accuracy {outcomes['balanced_accuracy']:.4f} (out of fold)")
    if mitigated and not mitigated["rule"]["randomized"]:
        shown = ", ".join(f"{key} {rule['threshold']:.4f}" for key, rule in mitigated["rule"]["groups"].items())
        lines.append(f"bias: per-group thresholds ({mitigated['rule']['constraint']}): {shown}")
    lines.append(f"bias: mitigation {fairness['reason']}")
    lines.append(f"bias: fairness gate {'pass' if fairness['passed'] else 'FAIL'}")
    return lines


def bias_files(use_case: UseCase, model_dir: str, feature_set_file: str, holdout_file: str, test_file: str,
               evaluation_file: str, decided_file: str) -> dict:
    """Judge fairness (out of fold), report it on test; write the evaluation with its fairness (and mitigation)."""
    evaluation = json.loads(Path(evaluation_file).read_text())
    if use_case.task != "binary" or not use_case.sensitive_attributes:
        fairness = {"attributes": {}, "mitigation": None, "passed": True, "note": "no sensitive attributes"}
    else:
        feature_set, model = FeatureSet.load(feature_set_file), Ensemble.load(model_dir)
        test = pd.read_parquet(test_file)
        x = feature_set.transform(test)
        fairness = judge(use_case, feature_set.labels(test), model.predict(x), evaluation["threshold"], test, x,
                         pd.read_parquet(holdout_file))
        print("\n".join(fairness_lines(fairness)))
    decided = decide_with_fairness(evaluation, fairness, use_case)
    Path(decided_file).write_text(json.dumps(decided, indent=1))
    return decided
