import itertools
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flowline.components.evaluate.evaluation import (
    ROC_POINTS,
    binary_metrics,
    bootstrap_intervals,
    calibration_bins,
    choose_threshold,
    decile_table,
    normalized_gini,
    precision_recall_points,
    regression_metrics,
    report_markdown,
    roc_points,
)
from flowline.decisions import gate_decisions, segment_names
from flowline.use_case import CostSpec, GateSpec


def brute_force_cost(y, p, costs: CostSpec, threshold: float) -> float:
    predicted = p >= threshold
    return float(
        costs.false_negative * np.sum(~predicted & (y == 1))
        + costs.false_positive * np.sum(predicted & (y == 0))
        + costs.true_positive * np.sum(predicted & (y == 1))
    )


@pytest.mark.parametrize("seed", range(5))
def test_threshold_has_the_lowest_cost_of_all_candidates(seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300).astype(float)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1).round(2)  # rounded: ties included
    costs = CostSpec(false_negative=float(rng.integers(1, 20)), false_positive=1, true_positive=0.5)
    threshold, cost = choose_threshold(y, p, costs)
    assert cost == brute_force_cost(y, p, costs, threshold)
    candidates = itertools.chain(np.unique(p), [1.01])
    assert cost == min(brute_force_cost(y, p, costs, t) for t in candidates)


def test_expensive_false_alarms_can_mean_nobody_is_flagged():
    y = np.array([0, 0, 0, 1.0])
    p = np.array([0.9, 0.8, 0.7, 0.6])
    threshold, cost = choose_threshold(y, p, CostSpec(false_negative=1, false_positive=100))
    assert threshold > 0.9 and cost == 1


@pytest.mark.parametrize("highest", [0.3059244002274355, 0.9, 0.1 + 1e-12, 0.5])  # float32 rounds up, down, exact
def test_flagging_nobody_flags_nobody_in_float32_as_served(highest):
    """The threshold above the top score was float64's next value, which float32 rounds back to the top score:
    the server, comparing in float32, flagged the top row that evaluation counted negative (the numbers audit)."""
    y = np.array([0, 0, 1.0])
    p = np.array([highest, highest / 2, highest / 3])
    threshold, _ = choose_threshold(y, p, CostSpec(false_negative=1, false_positive=100))
    assert threshold > highest and np.float32(threshold) > np.float32(highest)
    assert np.float32(threshold) == threshold  # served exactly as reported


def test_binary_metrics_at_the_threshold():
    y = np.array([0, 0, 1, 1, 1, 0.0])
    p = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    costs = CostSpec(false_negative=100, false_positive=10, true_positive=1)
    metrics = binary_metrics(y, p, threshold=0.5, costs=costs)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # At 0.5: one fraud missed (100), one false alarm (10), two caught (2 x 1), over 6 rows.
    assert metrics["expected_cost_per_1000"] == pytest.approx(1000 * 112 / 6)


@pytest.mark.parametrize("seed", range(4))
def test_operating_points_match_a_brute_force_scan_of_every_threshold(seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200).astype(float)
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, 200), 0, 1).round(2)
    best_recall = best_precision = 0.0
    for threshold in np.unique(p):
        flagged = p >= threshold
        precision, recall = y[flagged].mean(), y[flagged].sum() / y.sum()
        if precision >= 0.9:
            best_recall = max(best_recall, recall)
        if recall >= 0.9:
            best_precision = max(best_precision, precision)
    metrics = binary_metrics(y, p, 0.5, CostSpec(false_negative=1, false_positive=1))
    assert metrics["recall_at_p90"] == pytest.approx(best_recall)
    assert metrics["precision_at_r90"] == pytest.approx(best_precision)


def test_no_threshold_reaching_90_percent_precision_gives_recall_zero():
    y = np.array([1, 0, 1, 0, 1, 0.0])
    p = np.array([0.9, 0.9, 0.8, 0.8, 0.7, 0.7])  # every cut flags as many negatives as positives
    assert binary_metrics(y, p, 0.5, CostSpec(false_negative=1, false_positive=1))["recall_at_p90"] == 0.0


def test_normalized_gini_is_one_for_the_perfect_order_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    y = rng.gamma(0.5, 40, 5000) * (rng.uniform(size=5000) < 0.3)
    assert normalized_gini(y, y) == pytest.approx(1.0)
    assert normalized_gini(y, -y) < -0.9
    assert abs(normalized_gini(y, rng.uniform(size=5000))) < 0.05
    # A constant prediction ties every row: they share the mean, so the Gini is exactly 0.
    assert normalized_gini(y, np.zeros(5000)) == pytest.approx(0.0, abs=1e-12)


def test_rank_metrics_of_a_constant_are_zero_not_nan_and_the_evaluation_stays_json():
    """scipy's Spearman of a constant, and a Gini over actuals that are all zero, are NaN, which evaluation.json
    wrote as a bare NaN (not JSON) and no report explained."""
    values = np.array([0.0, 3.0, 1.0, 7.0])
    flat = regression_metrics(values, np.full(4, 2.0))
    nothing_spent = regression_metrics(np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0]))
    assert flat["spearman"] == 0.0 and nothing_spent["gini"] == 0.0 and nothing_spent["spearman"] == 0.0
    json.dumps([flat, nothing_spent], allow_nan=False)


def test_regression_metrics_report_both_totals():
    y, predictions = np.array([0.0, 10, 30]), np.array([5.0, 5, 20])
    metrics = regression_metrics(y, predictions)
    assert metrics["total_predicted"] == 30 and metrics["total_actual"] == 40
    assert metrics["mae"] == pytest.approx(20 / 3)


def test_deciles_and_segments_follow_the_predicted_order():
    predictions = np.arange(100, dtype=float)
    y = predictions * 2
    table = decile_table(y, predictions)
    assert [row["rows"] for row in table["table"]] == [10] * 10
    assert table["table"][-1]["mean_actual"] == pytest.approx(2 * np.mean(np.arange(90, 100)))
    assert sum(row["share_of_actual"] for row in table["table"]) == pytest.approx(1.0)
    segments = {"high": 9, "mid": 6, "low": 1}
    names = segment_names(np.array([0.0, 49, 50, 79, 80, 99, 1e9]), table["edges"], segments)
    assert names == ["low", "low", "mid", "mid", "high", "high", "high"]


def test_gates_pass_and_fail_on_their_bounds():
    decisions = gate_decisions(
        {"roc_auc": 0.83, "brier": 0.2},
        {"roc_auc": GateSpec(min=0.84), "brier": GateSpec(max=0.25)},
    )
    assert decisions["roc_auc"] == {"value": 0.83, "min": 0.84, "max": None, "passed": False}
    assert decisions["brier"]["passed"] is True


def test_roc_points_are_few_and_finite():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    points = roc_points(y, rng.uniform(size=5000))
    assert len(points["fpr"]) <= ROC_POINTS
    assert points["fpr"][0] == 0 and points["tpr"][-1] == 1
    assert max(points["thresholds"]) <= 1.0


def test_precision_recall_points_are_few_and_span_the_curve():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    points = precision_recall_points(y, rng.uniform(size=5000))
    assert len(points["recall"]) == len(points["precision"]) <= ROC_POINTS
    assert points["recall"][0] == 1 and points["recall"][-1] == 0 and points["precision"][-1] == 1
    assert abs(points["precision"][0] - y.mean()) < 1e-12  # everyone flagged: precision is the base rate


def test_calibration_bins_hold_each_bins_mean_prediction_and_observed_rate():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.12, 0.95, 1.0, 0.91])
    bins = calibration_bins(y, p)
    assert [b["rows"] for b in bins] == [1, 2, 3]  # empty bins are left out; 1.0 falls in the last bin
    assert bins[1] == {"rows": 2, "mean_predicted": pytest.approx(0.135), "observed_rate": 0.5}
    assert bins[2]["observed_rate"] == pytest.approx(2 / 3) and bins[2]["mean_predicted"] == pytest.approx(2.86 / 3)


def brute_force_components(y, scores):
    """DeLong's structural components by their definition: O(m n) comparisons."""
    positives, negatives = scores[y == 1], scores[y == 0]
    psi = (positives[:, None] > negatives[None, :]) + 0.5 * (positives[:, None] == negatives[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def test_delong_matches_its_definition_and_sklearn():
    from flowline.components.evaluate.comparison import delong_test

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300).astype(float)
    a = (y + rng.normal(0, 1.0, 300)).round(1)  # rounded: ties
    b = (y + rng.normal(0, 1.5, 300)).round(1)
    outcome = delong_test(y, a, b)
    assert outcome["challenger_score"] == pytest.approx(roc_auc_score(y, a))
    assert outcome["champion_score"] == pytest.approx(roc_auc_score(y, b))
    (a10, a01), (b10, b01) = brute_force_components(y, a), brute_force_components(y, b)
    s10, s01 = np.cov(np.vstack([a10, b10])), np.cov(np.vstack([a01, b01]))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / len(a10) + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / len(a01)
    assert outcome["standard_error"] == pytest.approx(np.sqrt(variance))
    assert outcome["z"] == pytest.approx((outcome["challenger_score"] - outcome["champion_score"]) / np.sqrt(variance))


def test_delong_keeps_its_false_alarm_rate_and_finds_a_real_gain():
    from flowline.components.evaluate.comparison import delong_test

    rng = np.random.default_rng(2)
    false_alarms = found = 0
    for _ in range(200):
        y = rng.integers(0, 2, 400).astype(float)
        signal = y + rng.normal(0, 1, 400)
        same_a, same_b = signal + rng.normal(0, 0.7, 400), signal + rng.normal(0, 0.7, 400)
        false_alarms += delong_test(y, same_a, same_b)["p_value"] < 0.05
        found += delong_test(y, signal, signal + rng.normal(0, 1.5, 400))["p_value"] < 0.05
    assert false_alarms / 200 <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 200)  # alpha plus a binomial margin
    assert found / 200 > 0.9


def test_the_auc_confidence_interval_covers_the_auc_and_narrows_with_rows():
    from flowline.components.evaluate.comparison import auc_confidence_interval

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 4000).astype(float)
    scores = y + rng.normal(0, 1, 4000)
    low, high = auc_confidence_interval(y, scores)
    small_low, small_high = auc_confidence_interval(y[:400], scores[:400])
    assert low < roc_auc_score(y, scores) < high and (high - low) < (small_high - small_low) / 2.5


def test_champion_decisions():
    from flowline.components.evaluate.comparison import champion_decision

    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 1000).astype(float)
    strong, weak = y + rng.normal(0, 0.8, 1000), y + rng.normal(0, 2.0, 1000)
    assert champion_decision("binary", y, strong, None, True, 0.05, 0)["decision"] == "promote"
    assert champion_decision("binary", y, strong, weak, False, 0.05, 0)["reason"].endswith("failed its quality gates")
    better = champion_decision("binary", y, strong, weak, True, 0.05, 0)
    assert better["decision"] == "promote" and better["p_value"] < 0.05 and better["test"] == "delong"
    same = champion_decision("binary", y, strong, strong, True, 0.05, 0)
    assert same["decision"] == "keep" and same["p_value"] == 1.0 and "not significantly better" in same["reason"]
    assert champion_decision("binary", y, weak, strong, True, 0.05, 0)["decision"] == "keep"
    values = rng.normal(100, 10, 500)
    close, far = values + rng.normal(0, 1, 500), values + rng.normal(0, 5, 500)
    regression = champion_decision("regression", values, close, far, True, 0.05, 0)
    assert regression["decision"] == "promote" and regression["test"] == "bootstrap" and regression["difference"] > 0
    assert champion_decision("regression", values, far, close, True, 0.05, 0)["decision"] == "keep"


def test_the_dashboard_report_shows_deciles_for_regression_and_the_threshold_for_binary(toy_use_case):
    gates = {"spearman": {"value": 0.5, "min": 0.4, "max": None, "passed": True}}
    decision = {"decision": "promote", "reason": "no champion"}
    y, predictions = np.arange(100.0), np.arange(100.0)
    regression = {"test_rows": 100, "metrics": regression_metrics(y, predictions), "gates": gates,
                  "champion_challenger": decision, "deciles": decile_table(y, predictions),
                  "segments": {"high": 9, "low": 1},
                  "confidence_intervals": bootstrap_intervals(y, predictions, regression_metrics, 0, resamples=20)}
    spend = toy_use_case.model_copy(update={"task": "regression"})
    text = report_markdown(regression, spend)
    assert "| 10 | 10 | 94.50 | 94.50 | 19.1% |" in text  # 945 of 4,950 and "high from decile 9, low from decile 1" in text
    assert "| spearman | 0.5000 | >= 0.4 | pass |" in text
    assert "| r2 | 1.0000 | 1.0000 to 1.0000 |" in text
    binary = {"test_rows": 6, "metrics": {"roc_auc": 0.9}, "gates": {}, "champion_challenger": decision,
              "confusion_matrix": [[3, 1], [0, 2]], "classes": ["no", "yes"], "threshold": 0.4,
              "test_cost_at_threshold": 12.0, "confidence_intervals": {"roc_auc": [0.8, 0.95]}}
    binary_text = report_markdown(binary, toy_use_case)
    assert "2 of the 2 positives ('yes') flagged, 1 false alarms among the 4 others ('no')" in binary_text
    # the alert rate and the costs behind the threshold, which no report stated
    assert "3 of 6 rows flagged (50.0%, the alert rate)" in binary_text
    assert "at the use case's costs: a missed positive 5, a false alarm 1, a caught positive 0." in binary_text
    assert "| roc_auc | 0.9000 | 0.8000 to 0.9500 |" in binary_text
    # The evaluate step comes before the bias step: its decision is on the quality gates only, and says so.
    assert "**Champion/challenger, on the quality gates only:** promote: no champion (subject to the bias step's " \
           "fairness gates: a failed one keeps the champion)" in binary_text
    assert "**Served decisions:** at this single threshold, unless the bias step's fairness mitigation serves " \
           "per-group thresholds" in binary_text


def test_bootstrap_intervals_cover_the_metric_and_narrow_with_rows():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 4000).astype(float)
    scores = np.clip(0.5 * y + rng.normal(0.25, 0.3, 4000), 0, 1)

    def accuracy(labels, p):
        return {"accuracy": float(np.mean((p >= 0.5) == (labels == 1)))}

    wide = bootstrap_intervals(y[:200], scores[:200], accuracy, seed=0)["accuracy"]
    narrow = bootstrap_intervals(y, scores, accuracy, seed=0)["accuracy"]
    assert narrow[0] < accuracy(y, scores)["accuracy"] < narrow[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2
    assert bootstrap_intervals(y, scores, accuracy, seed=0) == {"accuracy": narrow}  # seeded
