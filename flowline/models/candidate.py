"""What every candidate model family is: the training data it reads, how it is scored, and the
interface it implements (fit, refit, margin, contributions, save, load).

The families themselves are in families.py (and lightgbm.py, catboost.py); this module holds what they share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Optional

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from flowline.features.feature_set import FeatureSet
from flowline.features.kinds import FeatureLayout
from flowline.use_case import TuningSpec

REPORT_EVERY = 10  # boosting rounds between intermediate scores (pruning, Katib's median stopping)
Report = Callable[[int, float], None]

@dataclass(frozen=True)
class TrainingData:
    """Encoded train and valid matrices with their labels (binary labels are 0/1).

    `layout`: which columns each kind of family reads, when the FeatureSet has category
    codes; `feature_types`: the types of the columns ("c" for a code: XGBoost's categorical type,
    LightGBM's categorical_feature), set on the column subset a tree family trains on.
    """

    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    layout: Optional[FeatureLayout] = None
    feature_types: Optional[tuple[str, ...]] = None

    @classmethod
    def from_splits(cls, feature_set: FeatureSet, train: pd.DataFrame, valid: pd.DataFrame, task: str) -> TrainingData:
        """Encode the splits: out-of-fold target encodings on train, the fitted ones on valid."""
        return cls(
            task=task,
            x_train=feature_set.transform_training(train), y_train=feature_set.labels(train),
            x_valid=feature_set.transform(valid), y_valid=feature_set.labels(valid), layout=feature_set.layout,
        )


# tuning.metric: the score a binary search maximises, and the name reports write it by
BINARY_SCORES = {"roc_auc": roc_auc_score, "auprc": average_precision_score}
SCORE_NAMES = {"roc_auc": "ROC-AUC", "auprc": "AUPRC"}


def validation_score(task: str, metric: str, y: np.ndarray, margins: np.ndarray) -> float:
    """Higher is better: for binary tasks `metric` (tuning.metric: roc_auc or auprc), for regression negative RMSE."""
    if task == "binary":
        return float(BINARY_SCORES[metric](y, margins))
    return -float(np.sqrt(np.mean((y - margins) ** 2)))


def score_name(task: str, metric: str) -> str:
    """What validation_score scores, as reports name it: ROC-AUC or AUPRC (binary), negative RMSE (regression)."""
    return SCORE_NAMES[metric] if task == "binary" else "negative RMSE"


def log_link_contributions(log_parts: np.ndarray) -> np.ndarray:
    """Attributions of a log-link model, given on the log scale (last column the base), in prediction
    units: the base becomes exp(base) and each feature gets its log share of prediction - exp(base)."""
    base = log_parts[:, -1]
    delta = log_parts[:, :-1].sum(axis=1)
    prediction, base_value = np.exp(base + delta), np.exp(base)
    moved = np.abs(delta) > 1e-12
    # (exp(b + d) - exp(b)) / d, which tends to exp(b) as d -> 0
    scale = np.where(moved, (prediction - base_value) / np.where(moved, delta, 1.0), base_value)
    return np.column_stack([log_parts[:, :-1] * scale[:, None], base_value])


@dataclass
class Fitted:
    """A fitted candidate: the model, its validation score and how long it trained (rounds or epochs)."""

    model: "CandidateModel"
    valid_score: float
    iterations: int


class CandidateModel:
    family: ClassVar[str]
    task: str

    @classmethod
    def fit(cls, params: dict, data: TrainingData, tuning: TuningSpec, report: Optional[Report] = None) -> Fitted:
        """Train on data's train rows and score on valid. Families that iterate early-stop on valid;
        the others fit once (one "iteration")."""
        model = cls.refit(params, 1, data.x_train, data.y_train, data.task, tuning, data.feature_types)
        return Fitted(model, validation_score(data.task, tuning.metric, data.y_valid, model.margin(data.x_valid)), 1)

    @classmethod
    def refit(cls, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
              tuning: TuningSpec, feature_types: Optional[tuple[str, ...]] = None) -> CandidateModel:
        """Train on (x, y) for a fixed number of iterations, with nothing held out (`feature_types`: the
        tree families' column types, "c" for a category code)."""
        raise NotImplementedError

    def margin(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(rows x (features + 1)): attributions in margin units; the last column is the base value."""
        raise NotImplementedError

    def save(self, folder: Path, prefix: str) -> list[str]:
        """Write the model's files into `folder`, named from `prefix`; return their names."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path, files: list[str], task: str) -> CandidateModel:
        raise NotImplementedError

    def set_threads(self, threads: int) -> None:
        """Serving scores one row per request: one thread costs less than waking a pool."""
