"""Fitting a fairness mitigation: per-group decision thresholds on out-of-fold scores.

Deterministic (the default): each group gets one threshold, chosen so that the total
expected cost (the use case's `costs`) is lowest while every group's constrained rates
(selection rate, TPR, FPR, or TPR and FPR for equalized odds) lie in one band of width
`tolerance`. The search is exact over a grid: for each band (its lower edge steps by a
tenth of the tolerance) every group independently takes its cheapest candidate threshold
whose rates fall in the band, and the cheapest band wins. Groups with fewer than
`fairness.min_group_rows` rows keep the single threshold.

Randomized (`mitigation.randomized`): fairlearn's ThresholdOptimizer, kept as data.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin

from flowline.decisions import GroupThresholds, above_every
from flowline.use_case import CostSpec, MitigationSpec, UseCase

# The rates each constraint holds within `tolerance` across groups.
CONSTRAINED_RATES = {"demographic_parity": ("selection_rate",), "true_positive_rate_parity": ("true_positive_rate",),
                     "false_positive_rate_parity": ("false_positive_rate",),
                     "equalized_odds": ("true_positive_rate", "false_positive_rate")}
CANDIDATES = 200  # thresholds tried per group: quantiles of its scores, plus the single threshold
BAND_STEPS = 10  # band edges step by tolerance / BAND_STEPS


def _candidates(y: np.ndarray, scores: np.ndarray, single: float, costs: CostSpec
                ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """A group's candidate thresholds, its rates at each (NaN where undefined) and its total cost at each."""
    nobody = above_every(scores.max())
    thresholds = np.unique(np.r_[np.quantile(scores, np.linspace(0, 1, CANDIDATES)), single, nobody])
    positive = scores[None, :] >= thresholds[:, None]
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    tp = (positive & (y == 1)).sum(axis=1)
    fp = (positive & (y == 0)).sum(axis=1)
    rates = {"selection_rate": positive.mean(axis=1),
             "true_positive_rate": tp / positives if positives else np.full(len(thresholds), np.nan),
             "false_positive_rate": fp / negatives if negatives else np.full(len(thresholds), np.nan)}
    cost = costs.false_negative * (positives - tp) + costs.false_positive * fp + costs.true_positive * tp
    return thresholds, rates, cost.astype(float)


def _cheapest_per_band(rates: list[np.ndarray], cost: np.ndarray, starts: np.ndarray, tolerance: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each band (one lower edge per rate, from `starts`), a group's cheapest candidate whose rates all
    lie in it: its cost (inf when none does) and its index. One or two rates; a NaN rate fits any band."""
    inside = [np.isnan(rate)[:, None]
              | ((rate[:, None] >= starts - 1e-12) & (rate[:, None] <= starts + tolerance + 1e-12))
              for rate in rates]  # candidates x band edges, per rate
    if len(inside) == 1:
        priced = np.where(inside[0], cost[:, None], np.inf)
        return priced.min(axis=0), priced.argmin(axis=0)
    best, chosen = np.empty((len(starts), len(starts))), np.empty((len(starts), len(starts)), dtype=int)
    for row in range(len(starts)):  # row by row: candidates x bands would not fit in memory at a small tolerance
        priced = np.where(inside[0][:, row:row + 1] & inside[1], cost[:, None], np.inf)
        best[row], chosen[row] = priced.min(axis=0), priced.argmin(axis=0)
    return best, chosen


def cost_optimal_thresholds(y: np.ndarray, scores: np.ndarray, keys: pd.Series, constraint: str, tolerance: float,
                            costs: CostSpec, single: float, min_rows: int) -> Optional[dict[str, float]]:
    """Per group key, the threshold of the cheapest set whose constrained rates all lie within `tolerance`.
    Groups with fewer than `min_rows` rows are left out (they keep `single`); None when that is all of them."""
    names = CONSTRAINED_RATES[constraint]
    starts = np.arange(0.0, 1.0 - tolerance + 1e-9, tolerance / BAND_STEPS)
    keys = keys.to_numpy()
    fitted = [key for key in pd.unique(keys) if (keys == key).sum() >= min_rows]
    if not fitted:
        return None
    total, choices = 0.0, {}
    for key in fitted:
        rows = keys == key
        thresholds, rates, cost = _candidates(y[rows], scores[rows], single, costs)
        best, chosen = _cheapest_per_band([rates[name] for name in names], cost, starts, tolerance)
        choices[key] = (thresholds, chosen)
        total = total + best
    band = np.unravel_index(int(np.argmin(total)), np.shape(total))  # finite: everyone (or nobody) positive fits
    return {str(key): float(thresholds[chosen[band]]) for key, (thresholds, chosen) in choices.items()}


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


def randomized_rules(y: np.ndarray, scores: np.ndarray, keys: pd.Series, spec: MitigationSpec) -> dict[str, dict]:
    """fairlearn ThresholdOptimizer on (scores, labels) per group key, each group's rule kept as data."""
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
    return groups


def fit_group_thresholds(y: np.ndarray, scores: np.ndarray, keys: pd.Series, attributes: tuple[str, ...],
                         use_case: UseCase, threshold: float) -> Optional[GroupThresholds]:
    """The use case's mitigation fitted on (scores, labels) per group key; None when no group has the rows
    to fit deterministic thresholds on. (Some always meet the constraint: everyone, or nobody, positive.)"""
    spec = use_case.fairness.mitigation
    if spec.randomized:
        return GroupThresholds(tuple(attributes), spec.constraint, float(threshold),
                               randomized_rules(y, scores, keys, spec), randomized=True)
    found = cost_optimal_thresholds(y, scores, keys, spec.constraint, spec.tolerance, use_case.costs, threshold,
                                    use_case.fairness.min_group_rows)
    if found is None:
        return None
    return GroupThresholds(tuple(attributes), spec.constraint, float(threshold),
                           {key: {"threshold": value} for key, value in found.items()})
