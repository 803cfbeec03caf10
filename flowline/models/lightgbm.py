"""The lightgbm family: LightGBM's gradient-boosted trees, with its native categorical splits.

Like xgboost it early-stops on valid, reports its validation score every REPORT_EVERY
rounds, and reads the category codes of a FeatureSet that has them (a tree family):
they are LightGBM's `categorical_feature`s, split by grouping categories. A code that is
NaN (a category unseen in training, or missing) is missing to LightGBM, never an error.

Training is seeded and `deterministic` (one histogram layout, `force_col_wise`), so one
seed gives one model. The margin is the log-odds (`raw_score`) for binary tasks and the
prediction for regression (a Tweedie model applies its log link); contributions are
LightGBM's exact TreeSHAP values (`pred_contrib`), rescaled to prediction units under the
log link. The model is saved as LightGBM's native text model and read back from its text:
no pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import lightgbm as lgb
import numpy as np

from flowline.models.candidate import (
    REPORT_EVERY,
    CandidateModel,
    Fitted,
    Report,
    TrainingData,
    log_link_contributions,
    validation_score,
)
from flowline.use_case import TuningSpec

BAGGING_FREQ = 1  # rows are bagged every round, so bagging_fraction always applies (1.0: no bagging)
LIGHTGBM_METRICS = {"roc_auc": "auc", "auprc": "average_precision"}  # tuning.metric as LightGBM logs it


def _params(task: str, tuning: TuningSpec, params: dict) -> dict:
    if task == "binary":
        objective = {"objective": "binary",
                     "metric": ["binary_logloss", LIGHTGBM_METRICS[tuning.metric]]}  # early stopping: the first
    elif tuning.objective == "tweedie":
        objective = {"objective": "tweedie", "tweedie_variance_power": tuning.tweedie_power, "metric": ["rmse"]}
    else:
        objective = {"objective": "regression", "metric": ["rmse"]}
    # No num_threads: LightGBM takes OpenMP's limit (all cores, or OMP_NUM_THREADS), as XGBoost does.
    return {**objective, "seed": tuning.seed, "deterministic": True, "force_col_wise": True, "verbosity": -1,
            "bagging_freq": BAGGING_FREQ, **params}


def _dataset(x: np.ndarray, y: np.ndarray, feature_types: Optional[tuple[str, ...]],
             reference: Optional[lgb.Dataset] = None) -> lgb.Dataset:
    """A Dataset whose category codes ("c" in `feature_types`) get LightGBM's categorical splits."""
    categorical = [i for i, kind in enumerate(feature_types or ()) if kind == "c"]
    return lgb.Dataset(x, label=y, categorical_feature=categorical, reference=reference)


def _report_rounds(task: str, metric: str, report: Report) -> Callable[[lgb.callback.CallbackEnv], None]:
    """A callback passing the validation score (`metric`: tuning.metric) to `report` every REPORT_EVERY rounds,
    numbered 1, 2, ..."""
    logged = LIGHTGBM_METRICS[metric] if task == "binary" else "rmse"

    def callback(env: lgb.callback.CallbackEnv) -> None:
        if (env.iteration + 1) % REPORT_EVERY == 0:
            value = next(result[2] for result in env.evaluation_result_list if result[1] == logged)
            report((env.iteration + 1) // REPORT_EVERY, value if task == "binary" else -value)

    return callback


class LightGBMModel(CandidateModel):
    family = "lightgbm"

    def __init__(self, booster: lgb.Booster, task: str) -> None:
        self.booster, self.task = booster, task
        self.log_link = booster.params.get("objective") == "tweedie"
        self.threads = 0  # LightGBM's default: OpenMP's

    def margin(self, x: np.ndarray) -> np.ndarray:
        # Binary: the log-odds; regression: the prediction itself (a Tweedie model's exp of its raw score).
        return self.booster.predict(x, raw_score=self.task == "binary", num_threads=self.threads).astype(np.float64)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        parts = self.booster.predict(x, pred_contrib=True, num_threads=self.threads).astype(np.float64)
        return log_link_contributions(parts) if self.log_link else parts

    def gains(self) -> dict[int, float]:
        """Total gain per column the model split on (its own column index)."""
        totals = self.booster.feature_importance(importance_type="gain")
        return {column: float(gain) for column, gain in enumerate(totals) if gain > 0}

    @classmethod
    def fit(cls, params: dict, data: TrainingData, tuning: TuningSpec, report: Optional[Report] = None) -> Fitted:
        train = _dataset(data.x_train, data.y_train, data.feature_types)
        valid = _dataset(data.x_valid, data.y_valid, data.feature_types, reference=train)
        callbacks = [lgb.early_stopping(tuning.early_stopping_rounds, first_metric_only=True, verbose=False)]
        booster = lgb.train(_params(data.task, tuning, params), train, num_boost_round=tuning.max_boost_rounds,
                            valid_sets=[valid], valid_names=["valid"],
                            callbacks=callbacks + ([_report_rounds(data.task, tuning.metric, report)] if report
                                                   else []))
        # lgb.train returns the booster cut to the best round early stopping found.
        model = cls(booster, data.task)
        return Fitted(model, validation_score(data.task, tuning.metric, data.y_valid, model.margin(data.x_valid)),
                      booster.current_iteration())

    @classmethod
    def refit(cls, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
              tuning: TuningSpec, feature_types: Optional[tuple[str, ...]] = None) -> CandidateModel:
        booster = lgb.train(_params(task, tuning, params), _dataset(x, y, feature_types), num_boost_round=iterations)
        return cls(booster, task)

    def save(self, folder: Path, prefix: str) -> list[str]:
        name = f"{prefix}.txt"
        self.booster.save_model(folder / name)
        return [name]

    @classmethod
    def load(cls, folder: Path, files: list[str], task: str) -> CandidateModel:
        return cls(lgb.Booster(model_str=(folder / files[0]).read_text()), task)

    def set_threads(self, threads: int) -> None:
        self.threads = threads
