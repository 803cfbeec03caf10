"""Columns that give the label away: each feature column's ROC-AUC alone, so `flowline validate` can say which
column separates a binary label (almost) perfectly, as a value known only after the outcome does.

A number is scored as it is, with a blank below every value; a category, text or flag by the label's rate among
the rows with its value (a blank is a value), when it has at most MAX_VALUES values: more would let an id-like
column separate the rows it was measured on. A time is scored as a number, which catches a date set only once
the outcome happened by its blanks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from flowline.use_case import UseCase

SEPARATES = 0.99  # a column alone at this ROC-AUC or above gives the label away
MAX_VALUES = 50


def separating_columns(rows: pd.DataFrame, use_case: UseCase) -> dict[str, float]:
    """The feature columns whose ROC-AUC alone (either direction) is SEPARATES or more, by column, highest
    first; {} for a task that is not binary or rows with one class only."""
    if use_case.task != "binary":
        return {}
    y = (rows[use_case.label.column].astype(str) == use_case.label.positive).to_numpy()
    if y.all() or not y.any():
        return {}
    found = {}
    for column in use_case.feature_columns:
        score = _alone(rows[column], y) if column in rows.columns else None
        if score is not None and score >= SEPARATES:
            found[column] = score
    return dict(sorted(found.items(), key=lambda item: -item[1]))


def _alone(values: pd.Series, y: np.ndarray) -> float | None:
    """The column's ROC-AUC as its own score, in whichever direction is higher; None when it cannot score."""
    if pd.api.types.is_datetime64_any_dtype(values):
        values = values.astype("int64").where(values.notna())
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype(float)
        score = numbers.fillna(numbers.min() - 1 if numbers.notna().any() else 0.0).to_numpy()
    elif values.nunique(dropna=False) <= MAX_VALUES:
        keys = values.astype(str).where(values.notna(), "\0blank")
        score = pd.Series(y, index=values.index).groupby(keys).transform("mean").to_numpy()
    else:
        return None
    area = roc_auc_score(y, score)
    return float(max(area, 1 - area))
