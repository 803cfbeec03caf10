"""Scoring a model once on the untouched test split, with its threshold chosen on held-out predictions.

Also the champion/challenger decision (comparison.py): the champion package, when one
is given, scores the same test rows, less those it was fitted on (flowline/fitted_rows.py): after the data
changed, a seeded split puts most of the champion's training rows into the new test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    log_loss,
    mean_absolute_error,
    precision_recall_curve,
    r2_score,
    roc_auc_score,
    roc_curve,
)

from flowline import fitted_rows
from flowline.components.evaluate.comparison import auc_confidence_interval, champion_decision
from flowline.features.feature_set import FeatureSet
from flowline.features.kinds import FeatureError
from flowline.package.format import Package, PackageError
from flowline.models.ensemble import Ensemble, ModelError
from flowline.decisions import (above_every, class_names, decile_of, decision_metrics, gate_decisions,
                                outcome_cost)
from flowline.evaluation_report import report_markdown
from flowline.use_case import CostSpec, UseCase

ROC_POINTS = 200  # at most, per curve (ROC, precision-recall)
CALIBRATION_BINS = 10
BOOTSTRAP_RESAMPLES = 200  # for the 95 % intervals of the test metrics


def choose_threshold(y: np.ndarray, probabilities: np.ndarray, costs: CostSpec) -> tuple[float, float]:
    """The threshold (predict positive when p >= t) with the lowest total cost, and that cost.

    Every distinct probability is a candidate, plus one above all of them (nobody positive).
    """
    order = np.argsort(-probabilities, kind="stable")
    p_sorted, y_sorted = probabilities[order], y[order]
    # Cut after each run of equal probabilities: everything up to the cut is predicted positive.
    last_of_run = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    true_pos = np.cumsum(y_sorted)[last_of_run]
    false_pos = np.cumsum(1 - y_sorted)[last_of_run]
    false_neg = y.sum() - true_pos
    cost = costs.false_negative * false_neg + costs.false_positive * false_pos + costs.true_positive * true_pos
    thresholds = p_sorted[last_of_run]
    nobody_cost = costs.false_negative * y.sum()
    best = int(np.argmin(cost))
    if nobody_cost <= cost[best]:
        return above_every(thresholds[0]), float(nobody_cost)
    return float(thresholds[best]), float(cost[best])


def operating_points(y: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The best recall with precision >= 0.90 and the best precision with recall >= 0.90 (0 when none),
    over every threshold."""
    precision, recall, _ = precision_recall_curve(y, probabilities)
    return {"recall_at_p90": float(recall[precision >= 0.9].max(initial=0.0)),
            "precision_at_r90": float(precision[recall >= 0.9].max(initial=0.0))}


def binary_metrics(y: np.ndarray, probabilities: np.ndarray, threshold: float, costs: CostSpec) -> dict[str, float]:
    decided = decision_metrics(y, probabilities >= threshold, costs)
    return {
        "roc_auc": float(roc_auc_score(y, probabilities)),
        "auprc": float(average_precision_score(y, probabilities)),
        "log_loss": float(log_loss(y, probabilities, labels=[0, 1])),
        "brier": float(brier_score_loss(y, probabilities)),
        **{name: decided[name] for name in ("precision", "recall", "f1", "accuracy")},
        **operating_points(y, probabilities),
        "expected_cost_per_1000": decided["expected_cost_per_1000"],
    }


def gini(y: np.ndarray, predictions: np.ndarray) -> float:
    """Gini of `y` ordered by `predictions` (highest first); tied predictions share their rows' mean."""
    order = np.argsort(-predictions, kind="stable")
    ranked = pd.Series(y[order]).groupby(predictions[order], sort=False).transform("mean").to_numpy()
    n = len(y)
    return float(np.cumsum(ranked).sum() / y.sum() / n - (n + 1) / (2 * n))


def normalized_gini(y: np.ndarray, predictions: np.ndarray) -> float:
    """Gini of the predicted order over the Gini of the perfect order: 1 is perfect, 0 is random; 0 where the
    actual values are all equal (all zero, say), which leaves no order to find."""
    perfect = gini(y, y) if y.sum() != 0 else 0.0
    return gini(y, predictions) / perfect if perfect > 0 else 0.0


def regression_metrics(y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    return {
        "mae": float(mean_absolute_error(y, predictions)),
        "rmse": float(np.sqrt(np.mean((y - predictions) ** 2))),
        "r2": float(r2_score(y, predictions)),
        "spearman": float(np.nan_to_num(spearmanr(y, predictions).statistic)),  # 0 for a constant: it ranks nothing
        "gini": normalized_gini(y, predictions),
        "total_predicted": float(predictions.sum()),
        "total_actual": float(y.sum()),
    }


def decile_table(y: np.ndarray, predictions: np.ndarray) -> dict:
    """Rows by decile of predicted value (10: the highest): the nine edges, and each decile's rows,
    mean predicted and actual value, and share of the actual total."""
    edges = np.quantile(predictions, np.linspace(0.1, 0.9, 9))
    deciles = decile_of(predictions, edges)
    rows = []
    for decile in range(1, 11):
        chosen = deciles == decile
        rows.append({"decile": decile, "rows": int(chosen.sum()),
                     "mean_predicted": float(predictions[chosen].mean()) if chosen.any() else 0.0,
                     "mean_actual": float(y[chosen].mean()) if chosen.any() else 0.0,
                     "share_of_actual": float(y[chosen].sum() / y.sum()) if y.sum() else 0.0})
    return {"edges": edges.tolist(), "table": rows}


def bootstrap_intervals(y: np.ndarray, scores: np.ndarray, metrics_of, seed: int,
                        resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, list[float]]:
    """95 % percentile intervals of every metric `metrics_of(y, scores)` gives, over seeded resamples
    of the test rows (a binary resample with one class only is drawn again)."""
    rng = np.random.default_rng(seed)
    drawn: list[dict[str, float]] = []
    while len(drawn) < resamples:
        rows = rng.integers(0, len(y), len(y))
        if len(np.unique(y[rows])) < 2 and len(np.unique(y)) == 2:
            continue
        drawn.append(metrics_of(y[rows], scores[rows]))
    return {name: [float(np.percentile([d[name] for d in drawn], 2.5)),
                   float(np.percentile([d[name] for d in drawn], 97.5))] for name in drawn[0]}


def roc_points(y: np.ndarray, probabilities: np.ndarray) -> dict[str, list[float]]:
    """At most ROC_POINTS points of the ROC curve, with finite thresholds, for the Kubeflow UI."""
    fpr, tpr, thresholds = roc_curve(y, probabilities)
    thresholds = np.minimum(thresholds, 1.0)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(ROC_POINTS, len(fpr))).round().astype(int))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "thresholds": thresholds[keep].tolist()}


def precision_recall_points(y: np.ndarray, probabilities: np.ndarray) -> dict[str, list[float]]:
    """At most ROC_POINTS points of the precision-recall curve, for the model card."""
    precision, recall, _ = precision_recall_curve(y, probabilities)
    keep = np.unique(np.linspace(0, len(recall) - 1, min(ROC_POINTS, len(recall))).round().astype(int))
    return {"recall": recall[keep].tolist(), "precision": precision[keep].tolist()}


def calibration_bins(y: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """The test rows in equal-width bins of predicted probability: each non-empty bin's rows, mean predicted
    probability and observed positive rate, for the model card's calibration plot."""
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    return [{"rows": int(chosen.sum()), "mean_predicted": float(probabilities[chosen].mean()),
             "observed_rate": float(y[chosen].mean())}
            for chosen in (index == b for b in range(bins)) if chosen.any()]


MIN_COMPARED_ROWS = 100  # left of the test rows once the champion's own are out, below which there is no comparison


def champion_scores(champion_dir: str, test: pd.DataFrame, y_test: np.ndarray,
                    task: str) -> tuple[np.ndarray | None, np.ndarray, dict]:
    """The champion package's scores on the test rows it was not fitted on (fitted_rows.py), which rows those are
    (a mask of `test`), and what it is, with a note on the rows compared; None for the scores when there is no
    usable champion, or too few such rows (MIN_COMPARED_ROWS, with both classes) to compare on."""
    everything = np.ones(len(test), dtype=bool)
    if not champion_dir:
        return None, everything, {"package": None, "note": "none given"}
    try:
        champion = Package.open(champion_dir)
        if champion.use_case.task != task:
            raise ValueError(f"it is a {champion.use_case.task} model")
        described = {"package": champion_dir, "version": champion.version}
        if champion.fitted_rows is None:
            described["note"] = ("its package does not say which rows it was fitted on (built before packages kept "
                                 "them): some test rows may be among them")
            return champion.predict(test), everything, described
        compared = fitted_rows.unseen(test, champion.use_case, champion.fitted_rows)
        seen, left = int((~compared).sum()), int(compared.sum())
        described.update(fitted_on_test_rows=seen, compared_rows=left)
        if seen and (left < MIN_COMPARED_ROWS or (task == "binary" and len(np.unique(y_test[compared])) < 2)):
            described["note"] = (f"it was fitted on {seen:,} of the {len(test):,} test rows; the {left:,} it never "
                                 f"saw are too few to compare on (at least {MIN_COMPARED_ROWS}, of both classes)")
            return None, compared, described
        if seen:
            described["note"] = f"on the {left:,} of {len(test):,} test rows it was not fitted on"
        return champion.predict(test[compared]), compared, described
    except (PackageError, ModelError, FeatureError, OSError, KeyError, ValueError) as error:
        return None, everything, {"package": champion_dir, "note": f"the champion could not score the test rows: {error}"}


def evaluate_files(
    use_case: UseCase, model_dir: str, feature_set_file: str, holdout_file: str, test_file: str, evaluation_file: str,
    champion_dir: str = "",
) -> dict:
    """Choose the threshold on the held-out (out-of-fold) predictions, score test once, decide the gates
    and champion/challenger; write evaluation.json."""
    feature_set = FeatureSet.load(feature_set_file)
    model = Ensemble.load(model_dir)
    test = pd.read_parquet(test_file)
    y_test, p_test = feature_set.labels(test), model.predict(feature_set.transform(test))
    report: dict = {"task": use_case.task, "test_rows": len(y_test)}
    if use_case.task == "binary":
        holdout = pd.read_parquet(holdout_file)
        threshold, out_of_fold_cost = choose_threshold(holdout["label"].to_numpy(), holdout["prediction"].to_numpy(),
                                                       use_case.costs)
        metrics = binary_metrics(y_test, p_test, threshold, use_case.costs)
        predicted = (p_test >= threshold).astype(int)
        report.update(
            threshold=threshold,
            out_of_fold_cost_at_threshold=out_of_fold_cost,  # the total over the holdout: train + valid's rows (or
                                                             # the sample cross-fitted, under tuning.search_rows)
            out_of_fold_cost_per_1000=1000 * out_of_fold_cost / len(holdout),
            test_cost_at_threshold=outcome_cost(y_test, predicted == 1, use_case.costs),
            classes=class_names(use_case),
            confusion_matrix=confusion_matrix(y_test, predicted, labels=[0, 1]).tolist(),
            roc=roc_points(y_test, p_test),
            precision_recall=precision_recall_points(y_test, p_test),
            calibration=calibration_bins(y_test, p_test),
            confidence_intervals={
                **bootstrap_intervals(y_test, p_test, lambda y, p: binary_metrics(y, p, threshold, use_case.costs),
                                      use_case.tuning.seed),
                "roc_auc": list(auc_confidence_interval(y_test, p_test))},
        )
    else:
        metrics = regression_metrics(y_test, p_test)
        report.update(deciles=decile_table(y_test, p_test), segments=use_case.segments,
                      confidence_intervals=bootstrap_intervals(y_test, p_test, regression_metrics,
                                                               use_case.tuning.seed))
    gates = gate_decisions(metrics, use_case.gates)
    gates_passed = all(g["passed"] for g in gates.values())
    report.update(metrics=metrics, gates=gates, gates_passed=gates_passed)
    scores, compared, champion = champion_scores(champion_dir, test, y_test, use_case.task)
    decision = champion_decision(use_case.task, y_test[compared], p_test[compared], scores, gates_passed,
                                 use_case.champion.alpha, use_case.tuning.seed, champion.get("note", ""))
    report["champion_challenger"] = {"champion": champion, **decision}
    Path(evaluation_file).write_text(json.dumps(report, indent=1))
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    verdict = "passed" if gates_passed else "FAILED: " + ", ".join(k for k, g in gates.items() if not g["passed"])
    print(f"evaluate: test {shown}; quality gates {verdict}")
    print(f"evaluate: {decision['decision']} before the fairness gates: {decision['reason']}")
    return report


def evaluate_step(use_case_json: str, champion_dir: str, model_dir: str, feature_set_file: str, holdout_file: str,
                  test_file: str, evaluation, metrics, report_file: str) -> dict:
    """What both evaluate components do (component.py): evaluate_files, then the dashboard's Metrics (a failed
    gate leaves every step green, so the runs list and Compare view show the outcome: here
    `quality_gates_passed` and `promoted_before_fairness`; the bias step logs the final `gates_passed` and
    `promoted`), the decision on the `evaluation` artifact, and the Markdown report. Returns the report."""
    use_case = UseCase.model_validate_json(use_case_json)
    result = evaluate_files(use_case, model_dir, feature_set_file, holdout_file, test_file, evaluation.path,
                            champion_dir)
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    if use_case.task == "binary":
        metrics.log_metric("threshold", result["threshold"])
    decision = result["champion_challenger"]
    if "p_value" in decision:
        metrics.log_metric("champion_p_value", decision["p_value"])
    metrics.log_metric("quality_gates_passed", float(result["gates_passed"]))
    metrics.log_metric("promoted_before_fairness", float(decision["decision"] == "promote"))
    evaluation.metadata.update(quality_gates_passed=result["gates_passed"],
                               decision_before_fairness=decision["decision"])
    Path(report_file).write_text(report_markdown(result, use_case))
    return result
