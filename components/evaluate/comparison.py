"""Champion/challenger on the test split: promote the new model only when it is significantly better.

Binary tasks: DeLong's test for two correlated ROC-AUCs (both models score the same
test rows: those the champion was not fitted on, evaluation.py), one-sided: H1 is that the challenger's AUC is higher. Regression: a paired
bootstrap of the RMSE difference. The decision is `promote` when the challenger passed
its gates and either no champion is given or the test rejects "not better" at `alpha`;
`keep` otherwise. It is recorded in the package (evaluation.json) and the deploy step
follows it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.stats import norm, rankdata  # rankdata: midranks, ties share their mean

BOOTSTRAP_RESAMPLES = 2000


def _delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components over positives (v10) and negatives (v01)."""
    positives, negatives = scores[y == 1], scores[y == 0]
    m, n = len(positives), len(negatives)
    if m == 0 or n == 0:
        raise ValueError("the ROC-AUC needs both classes in the test rows")
    all_ranks = rankdata(np.concatenate([positives, negatives]))
    v10 = (all_ranks[:m] - rankdata(positives)) / n
    v01 = 1.0 - (all_ranks[m:] - rankdata(negatives)) / m
    return float(v10.mean()), v10, v01


def auc_confidence_interval(y: np.ndarray, scores: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """DeLong's confidence interval of one ROC-AUC, clipped to [0, 1]."""
    auc, v10, v01 = _delong_components(y, scores)
    se = np.sqrt(np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01))
    half = norm.ppf(0.5 + level / 2) * se
    return max(0.0, auc - half), min(1.0, auc + half)


def delong_test(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> dict:
    """Paired DeLong test of AUC(challenger) - AUC(champion), one-sided (challenger better)."""
    auc_a, a10, a01 = _delong_components(y, challenger)
    auc_b, b10, b01 = _delong_components(y, champion)
    covariance = np.cov(np.vstack([a10, b10])) / len(a10) + np.cov(np.vstack([a01, b01])) / len(a01)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = auc_a - auc_b
    se = float(np.sqrt(max(variance, 0.0)))
    z = difference / se if se > 0 else 0.0
    return {
        "test": "delong", "metric": "roc_auc", "challenger_score": auc_a, "champion_score": auc_b,
        "difference": difference,
        "standard_error": se, "z": z, "p_value": float(norm.sf(z)) if se > 0 else 1.0,
        "ci95": [difference - 1.959964 * se, difference + 1.959964 * se],
    }


def bootstrap_rmse_test(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, seed: int) -> dict:
    """Paired bootstrap of RMSE(champion) - RMSE(challenger): positive means the challenger is better."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(y), size=(BOOTSTRAP_RESAMPLES, len(y)))

    def rmse(predictions: np.ndarray, index: np.ndarray) -> np.ndarray:
        return np.sqrt(np.mean((y[index] - predictions[index]) ** 2, axis=-1))

    gains = rmse(champion, rows) - rmse(challenger, rows)
    everything = np.arange(len(y))
    return {
        "test": "bootstrap", "metric": "rmse", "challenger_score": float(rmse(challenger, everything)),
        "champion_score": float(rmse(champion, everything)), "difference": float(np.mean(gains)),
        "p_value": float(np.mean(gains <= 0)), "ci95": np.percentile(gains, [2.5, 97.5]).tolist(),
    }


def champion_decision(
    task: str,
    y: np.ndarray,
    challenger: np.ndarray,
    champion: Optional[np.ndarray],
    gates_passed: bool,
    alpha: float,
    seed: int,
    champion_note: str = "",
) -> dict:
    """Promote or keep, with the test's numbers and the reason in words (`champion_note`: why there is no champion
    to compare with, or which test rows the comparison is on)."""
    outcome: dict = {"alpha": alpha}
    if champion is not None:
        compare = delong_test if task == "binary" else lambda *a: bootstrap_rmse_test(*a, seed=seed)
        outcome.update(compare(y, challenger, champion))
    if not gates_passed:
        return {**outcome, "decision": "keep", "reason": "the challenger failed its quality gates"}
    if champion is None:
        return {**outcome, "decision": "promote",
                "reason": f"no champion to compare with{f' ({champion_note})' if champion_note else ''}"}
    better = outcome["p_value"] < alpha
    words = (f"{outcome['metric']} {outcome['challenger_score']:.4f} against the champion's "
             f"{outcome['champion_score']:.4f}, "
             f"one-sided p = {outcome['p_value']:.4f} ({outcome['test']}){f', {champion_note}' if champion_note else ''}")
    if better:
        return {**outcome, "decision": "promote", "reason": f"significantly better: {words}"}
    return {**outcome, "decision": "keep", "reason": f"not significantly better at alpha {alpha}: {words}"}
