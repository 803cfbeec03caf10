import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flowline.components.evaluate.evaluation import (
    ROC_POINTS,
    binary_metrics,
    choose_threshold,
    gate_decisions,
    roc_points,
)
from flowline.pipelines.use_case import CostSpec, GateSpec


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


def test_binary_metrics_at_the_threshold():
    y = np.array([0, 0, 1, 1, 1, 0.0])
    p = np.array([0.1, 0.6, 0.7, 0.4, 0.9, 0.2])
    metrics = binary_metrics(y, p, threshold=0.5)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert metrics["accuracy"] == pytest.approx(4 / 6)


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
