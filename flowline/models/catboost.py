"""The catboost family: CatBoost's gradient-boosted oblivious trees (every level of a tree splits on one condition).

Like xgboost and lightgbm it early-stops on valid (on the log loss, or RMSE) and reports its
validation score every REPORT_EVERY rounds. It reads the encodings, as the linear and MLP
families do, not the category codes: CatBoost's own categorical features must be whole
numbers or strings, never missing, where a FeatureSet's codes are NaN for a category unseen in
training.

Training is seeded, so one seed gives one model, and writes no files (CatBoost's training
log, `allow_writing_files`, stays off: pods run on a read-only filesystem). The margin is the
log-odds (`RawFormulaVal`) for binary tasks and the prediction for regression (a Tweedie model
applies its log link); contributions are CatBoost's exact TreeSHAP values (`ShapValues`),
rescaled to prediction units under the log link. The model is saved in CatBoost's native binary
format (.cbm), which holds trees and numbers only, and read back by CatBoost's own loader: no
pickle.

CatBoost is imported where a model is trained, scored or loaded, not with this module: importing it
takes about a quarter of a second (its notebook widget brings IPython), which every step, server and
command that registers the families would otherwise pay, whether or not a use case lists catboost.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

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

if TYPE_CHECKING:
    import catboost

CATBOOST_METRICS = {"roc_auc": "AUC", "auprc": "PRAUC"}  # tuning.metric as CatBoost computes it (pruning reports)
UNWEIGHTED = ":use_weights=false"  # with a class weight CatBoost logs PRAUC twice, weighted and, named so, not


def _params(task: str, tuning: TuningSpec, params: dict) -> dict:
    if task == "binary":
        loss = "Logloss"
    elif tuning.objective == "tweedie":
        loss = f"Tweedie:variance_power={tuning.tweedie_power}"
    else:
        loss = "RMSE"
    # thread_count -1: all cores, as OpenMP gives XGBoost and LightGBM.
    return {"loss_function": loss, "random_seed": tuning.seed, "thread_count": -1, "allow_writing_files": False,
            "logging_level": "Silent", **params}


class _ReportRounds:
    """A CatBoost callback passing the validation score (`metric`: tuning.metric) to `report` every
    REPORT_EVERY rounds, numbered 1, 2, ... (CatBoost numbers its rounds from 1).

    An exception `report` raises (the pruner's TrialPruned) would reach the caller as a CatBoostError, its type
    lost: the callback stops training instead, keeps it, and `fit` raises it once CatBoost has returned."""

    def __init__(self, task: str, metric: str, report: Report) -> None:
        self.task, self.logged, self.report = task, CATBOOST_METRICS[metric] if task == "binary" else "RMSE", report
        self.raised: Optional[Exception] = None

    def after_iteration(self, info) -> bool:
        if info.iteration % REPORT_EVERY == 0:
            logged = info.metrics["validation"]
            # Unweighted, as flowline scores valid, whatever scale_pos_weight the trial has.
            value = logged.get(self.logged + UNWEIGHTED, logged.get(self.logged))[-1]
            try:
                self.report(info.iteration // REPORT_EVERY, value if self.task == "binary" else -value)
            except Exception as error:  # noqa: BLE001 - raised again by fit, with its own type
                self.raised = error
                return False
        return True  # go on: early stopping is CatBoost's own


class CatBoostModel(CandidateModel):
    family = "catboost"

    def __init__(self, model: catboost.CatBoost, task: str) -> None:
        self.model, self.task = model, task
        self.log_link = str(model.get_params().get("loss_function", "")).startswith("Tweedie")
        self.threads = -1

    def margin(self, x: np.ndarray) -> np.ndarray:
        # Binary: the log-odds; regression: the prediction itself (a Tweedie model's exp of its raw score).
        raw = self.model.predict(x, prediction_type="RawFormulaVal", thread_count=self.threads).astype(np.float64)
        return np.exp(raw) if self.log_link else raw

    def contributions(self, x: np.ndarray) -> np.ndarray:
        import catboost

        parts = self.model.get_feature_importance(catboost.Pool(x), type="ShapValues",
                                                  thread_count=self.threads).astype(np.float64)
        return log_link_contributions(parts) if self.log_link else parts

    @classmethod
    def fit(cls, params: dict, data: TrainingData, tuning: TuningSpec, report: Optional[Report] = None) -> Fitted:
        import catboost

        settings = _params(data.task, tuning, {"iterations": tuning.max_boost_rounds, **params})
        reporter = _ReportRounds(data.task, tuning.metric, report) if report else None
        if reporter and data.task == "binary":  # computed on valid every round, for the reports only
            settings["custom_metric"] = [CATBOOST_METRICS[tuning.metric]]
        model = catboost.CatBoost(settings)
        model.fit(catboost.Pool(data.x_train, data.y_train), eval_set=catboost.Pool(data.x_valid, data.y_valid),
                  early_stopping_rounds=tuning.early_stopping_rounds, use_best_model=True,
                  callbacks=[reporter] if reporter else None)
        if reporter and reporter.raised:
            raise reporter.raised
        # use_best_model cuts the trees to the best round early stopping found.
        fitted = cls(model, data.task)
        return Fitted(fitted, validation_score(data.task, tuning.metric, data.y_valid, fitted.margin(data.x_valid)),
                      model.tree_count_)

    @classmethod
    def refit(cls, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
              tuning: TuningSpec, feature_types: Optional[tuple[str, ...]] = None) -> CandidateModel:
        import catboost

        model = catboost.CatBoost(_params(task, tuning, {**params, "iterations": iterations}))
        model.fit(catboost.Pool(x, y))
        return cls(model, task)

    def save(self, folder: Path, prefix: str) -> list[str]:
        name = f"{prefix}.cbm"
        self.model.save_model(str(folder / name), format="cbm")
        return [name]

    @classmethod
    def load(cls, folder: Path, files: list[str], task: str) -> CandidateModel:
        import catboost

        model = catboost.CatBoost()
        model.load_model(str(folder / files[0]), format="cbm")
        return cls(model, task)

    def set_threads(self, threads: int) -> None:
        self.threads = threads
