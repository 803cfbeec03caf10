"""What the baselines (flaml_baseline.py, autogluon_baseline.py) share: the columns they fit on, and what they
report of their test scores.

Imported by name from this folder inside each baseline's own venv: scikit-learn and the standard library only."""

from __future__ import annotations

import json

from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def positional_names(fit, test, label: str):
    """`fit` and `test` with every column but `label` named by its position (column_0, ...): LightGBM, inside
    both baselines, refuses JSON's special characters in feature names, and spambase has char_freq_[ and more."""
    names = {column: f"column_{i}" for i, column in enumerate(c for c in fit.columns if c != label)}
    return fit.rename(columns=names), test.rename(columns=names)


def scores_report(y_test, scores) -> dict:
    """ROC-AUC, AUPRC, recall at precision >= 0.90 and precision at recall >= 0.90 of `scores` on test."""
    precision, recall, _ = precision_recall_curve(y_test, scores)
    return {"roc_auc": roc_auc_score(y_test, scores), "auprc": average_precision_score(y_test, scores),
            "recall_at_p90": float(recall[precision >= 0.9].max(initial=0.0)),
            "precision_at_r90": float(precision[recall >= 0.9].max(initial=0.0))}


def write_result(path: str, result: dict) -> None:
    with open(path, "w") as out:
        json.dump(result, out, indent=1)
    print(json.dumps(result))
