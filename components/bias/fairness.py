"""Fairness of a binary model's decisions per sensitive attribute, its gate, and its mitigation.

For each attribute the test rows are grouped by its value (numeric attributes by the
use case's `fairness.bands`), and fairlearn's MetricFrame gives each group's selection
rate, true and false positive rates and precision at the served decision. Groups with
fewer than `fairness.min_group_rows` test rows are reported but left out of the gaps:

- demographic parity difference: the largest gap in selection rate;
- equalized odds difference: the larger of the largest TPR gap and the largest FPR gap;
- disparate impact ratio: the lowest selection rate over the highest (the four-fifths
  rule asks for >= 0.8).

Mitigation (`fairness.mitigation.enabled`) runs when a gate fails: fairlearn's
ThresholdOptimizer fits per-group thresholds on train's out-of-fold scores (never on
test) for the failing attributes together, under the use case's constraint. The rule
is kept as data, and applied, by `GroupThresholds` (thresholds.py), which the model
server loads without fairlearn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import balanced_accuracy_score, precision_score

from flowline.components.bias.thresholds import GroupThresholds, group_key, sensitive_groups
from flowline.components.evaluate.evaluation import decision_metrics, gate_decisions
from flowline.components.features.feature_set import FeatureSet
from flowline.components.train.ensemble import Ensemble
from flowline.pipelines.use_case import CostSpec, MitigationSpec, UseCase

def _precision(y_true, y_pred) -> float:
    return precision_score(y_true, y_pred, zero_division=0)


GROUP_METRICS = {"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                 "false_positive_rate": false_positive_rate, "precision": _precision}


def group_fairness(y: np.ndarray, decisions: np.ndarray, groups: pd.Series, min_rows: int) -> dict:
    """Per-group metrics and the three gaps over the groups with at least `min_rows` rows."""
    frame = MetricFrame(metrics=GROUP_METRICS, y_true=y, y_pred=decisions.astype(int),
                        sensitive_features=groups.to_numpy())
    counts = groups.value_counts()
    by_group = {str(group): {"rows": int(counts[group]), **{k: float(v) for k, v in row.items()}}
                for group, row in frame.by_group.iterrows()}
    compared = [group for group, row in by_group.items() if row["rows"] >= min_rows]
    result = {"by_group": by_group, "compared_groups": compared}
    if len(compared) < 2:
        return {**result, "demographic_parity_difference": 0.0, "equalized_odds_difference": 0.0,
                "disparate_impact_ratio": 1.0,
                "note": f"fewer than two groups have {min_rows} or more rows: nothing to compare"}
    rates = pd.DataFrame([by_group[group] for group in compared])
    selection = rates["selection_rate"]
    gap = {name: float(rates[name].max() - rates[name].min()) for name in GROUP_METRICS}
    return {**result,
            "demographic_parity_difference": gap["selection_rate"],
            "equalized_odds_difference": max(gap["true_positive_rate"], gap["false_positive_rate"]),
            "disparate_impact_ratio": float(selection.min() / selection.max()) if selection.max() > 0 else 1.0}


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
            "selection_rate": float(np.mean(positive)),
            "expected_cost_per_1000": decided["expected_cost_per_1000"]}


class _Scores(ClassifierMixin, BaseEstimator):
    """A fitted "estimator" whose prediction is the score it is given: ThresholdOptimizer's prefit model."""

    def fit(self, x=None, y=None) -> _Scores:
        self.fitted_ = True
        return self

    def predict(self, x) -> np.ndarray:
        return np.asarray(x, dtype=float)[:, 0]


# ThresholdOptimizer's thresholds can be +-inf ("everyone", "nobody"); scores lie in [0, 1].
THRESHOLD_BOUND = 2.0


def _bounded(threshold: float) -> float:
    return float(np.clip(threshold, -THRESHOLD_BOUND, THRESHOLD_BOUND))


def fit_group_thresholds(y: np.ndarray, scores: np.ndarray, keys: pd.Series, attributes: tuple[str, ...],
                         spec: MitigationSpec, threshold: float) -> GroupThresholds:
    """ThresholdOptimizer on (scores, labels) per group key, kept as data (thresholds.py)."""
    optimizer = ThresholdOptimizer(estimator=_Scores().fit(), constraints=spec.constraint,
                                   objective=spec.objective, prefit=True, predict_method="predict")
    optimizer.fit(scores.reshape(-1, 1), y, sensitive_features=keys.to_numpy())
    groups = {}
    for key, rule in optimizer.interpolated_thresholder_.interpolation_dict.items():
        groups[str(key)] = {
            "p0": float(rule.p0), "operator0": rule.operation0.operator,
            "threshold0": _bounded(rule.operation0.threshold),
            "p1": float(rule.p1), "operator1": rule.operation1.operator,
            "threshold1": _bounded(rule.operation1.threshold),
            "p_ignore": float(rule.get("p_ignore", 0.0)),
            "prediction_constant": float(rule.get("prediction_constant", 0.0)),
        }
    return GroupThresholds(tuple(attributes), spec.constraint, float(threshold), groups)


def failed_gates(assessed: dict[str, dict]) -> list[str]:
    """'attribute metric value' for every failed fairness gate, for reasons and logs."""
    return [f"{attribute} {metric} {gate['value']:.3f}" for attribute, result in assessed.items()
            for metric, gate in result["gates"].items() if not gate["passed"]]


def judge(use_case: UseCase, y: np.ndarray, scores: np.ndarray, threshold: float, rows: pd.DataFrame,
          x: np.ndarray, holdout: pd.DataFrame) -> dict:
    """Fairness at the single threshold; when a gate fails and mitigation is on, per-group thresholds
    fitted on `holdout` (train's out-of-fold scores), and fairness and outcomes under them."""
    decisions = scores >= threshold
    before = assess(use_case, y, decisions, rows)
    failing = tuple(attribute for attribute, result in before.items() if result["gate"] == "fail")
    outcome = {"attributes": before, "mitigation": None,
               "outcomes": {"single_threshold": decision_outcomes(y, decisions, use_case.costs)}}
    if failing and use_case.fairness.mitigation.enabled:
        mitigation = fit_group_thresholds(holdout["label"].to_numpy(), holdout["prediction"].to_numpy(),
                                          group_key(holdout, failing, use_case), failing,
                                          use_case.fairness.mitigation, threshold)
        mitigated = mitigation.decide(scores, rows, x, use_case)
        outcome.update(attributes=assess(use_case, y, mitigated, rows), before_mitigation=before,
                       mitigation=mitigation.to_dict())
        outcome["outcomes"]["mitigated"] = decision_outcomes(y, mitigated, use_case.costs)
    outcome["passed"] = all(result["gate"] == "pass" for result in outcome["attributes"].values())
    return outcome


def decide_with_fairness(evaluation: dict, fairness: dict) -> dict:
    """The evaluation with its fairness; a failed fairness gate fails the run and keeps the champion."""
    decided = {**evaluation, "fairness": fairness}
    if not fairness["passed"]:
        decided["gates_passed"] = False
        if evaluation["champion_challenger"]["decision"] == "promote":
            decided["champion_challenger"] = {
                **evaluation["champion_challenger"], "decision": "keep",
                "reason": "the challenger failed its fairness gates: " + ", ".join(failed_gates(fairness["attributes"]))}
    return decided


def bias_files(use_case: UseCase, model_dir: str, feature_set_file: str, holdout_file: str, test_file: str,
               evaluation_file: str, decided_file: str) -> dict:
    """Judge fairness on the test rows; write the evaluation with its fairness (and any mitigation)."""
    evaluation = json.loads(Path(evaluation_file).read_text())
    if use_case.task != "binary" or not use_case.sensitive_attributes:
        fairness = {"attributes": {}, "mitigation": None, "passed": True, "note": "no sensitive attributes"}
    else:
        feature_set, model = FeatureSet.load(feature_set_file), Ensemble.load(model_dir)
        test = pd.read_parquet(test_file)
        x = feature_set.transform(test)
        fairness = judge(use_case, feature_set.labels(test), model.predict(x), evaluation["threshold"], test, x,
                         pd.read_parquet(holdout_file))
    decided = decide_with_fairness(evaluation, fairness)
    Path(decided_file).write_text(json.dumps(decided, indent=1))
    for attribute, result in fairness["attributes"].items():
        shown = ", ".join(f"{m} {result[m]:.3f}" for m in ("demographic_parity_difference",
                                                           "equalized_odds_difference", "disparate_impact_ratio"))
        print(f"bias: {attribute}: {shown}; gate {result['gate']}")
    if fairness["mitigation"]:
        print(f"bias: mitigated with per-group thresholds ({fairness['mitigation']['constraint']}) on "
              f"{', '.join(fairness['mitigation']['attributes'])}")
    return decided
