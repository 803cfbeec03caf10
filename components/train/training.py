"""XGBoost tuned with Optuna TPE on train/valid, early-stopped, saved in native JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from flowline.components.features.feature_set import FeatureSet, encode_label
from flowline.pipelines.use_case import TuningSpec, UseCase

MODEL_FILE = "model.json"
TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class TrainResult:
    booster: xgb.Booster
    params: dict
    best_iteration: int
    valid_score: float
    metric: str
    trials: int


def base_params(task: str, seed: int) -> dict:
    if task == "binary":
        objective, eval_metric = "binary:logistic", ["auc", "logloss"]  # early stopping uses the last
    else:
        objective, eval_metric = "reg:squarederror", ["rmse"]
    return {"objective": objective, "eval_metric": eval_metric, "tree_method": "hist", "seed": seed, "nthread": 2}


def suggest_params(trial: optuna.Trial) -> dict:
    """The XGBoost search space."""
    return {
        "eta": trial.suggest_float("eta", 0.01, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 50, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "lambda": trial.suggest_float("lambda", 1e-3, 30, log=True),
        "alpha": trial.suggest_float("alpha", 1e-3, 10, log=True),
    }


def validation_score(task: str, y: np.ndarray, predictions: np.ndarray) -> float:
    """Higher is better: ROC-AUC for binary tasks, negative RMSE for regression."""
    if task == "binary":
        return float(roc_auc_score(y, predictions))
    return -float(np.sqrt(np.mean((y - predictions) ** 2)))


def tune_xgboost(
    train: xgb.DMatrix, valid: xgb.DMatrix, task: str, tuning: TuningSpec, trials: int
) -> TrainResult:
    """Search with TPE, each trial early-stopped on valid; refit the best at its best iteration."""
    y_valid = valid.get_label()

    def fit(params: dict, rounds: int, early_stopping: int | None) -> xgb.Booster:
        return xgb.train(
            {**base_params(task, tuning.seed), **params}, train, num_boost_round=rounds,
            evals=[(valid, "valid")], early_stopping_rounds=early_stopping, verbose_eval=False,
        )

    def objective(trial: optuna.Trial) -> float:
        booster = fit(suggest_params(trial), tuning.max_boost_rounds, tuning.early_stopping_rounds)
        trial.set_user_attr("best_iteration", booster.best_iteration)
        predictions = booster.predict(valid, iteration_range=(0, booster.best_iteration + 1))
        return validation_score(task, y_valid, predictions)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        print(f"train: trial {trial.number + 1}/{trials} score {trial.value:.4f} (best {study.best_value:.4f})")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=tuning.seed))
    study.optimize(objective, n_trials=trials, timeout=tuning.timeout_seconds, callbacks=[report])
    best = study.best_trial
    best_iteration = int(best.user_attrs["best_iteration"])
    booster = fit(best.params, best_iteration + 1, None)
    return TrainResult(
        booster=booster, params=best.params, best_iteration=best_iteration, valid_score=float(best.value),
        metric="roc_auc" if task == "binary" else "neg_rmse", trials=len(study.trials),
    )


def to_dmatrix(frame: pd.DataFrame, feature_set: FeatureSet, use_case: UseCase) -> xgb.DMatrix:
    return xgb.DMatrix(
        feature_set.transform(frame), label=encode_label(frame[use_case.label.column], use_case),
        feature_names=feature_set.feature_names,
    )


def train_files(
    use_case: UseCase, train_file: str, valid_file: str, feature_set_file: str, model_dir: str, trials: int = 0
) -> dict:
    """Tune and train from the split files; write model.json and training.json into model_dir.

    `trials` overrides the use case's tuning budget when above 0.
    """
    feature_set = FeatureSet.load(feature_set_file)
    train = to_dmatrix(pd.read_parquet(train_file), feature_set, use_case)
    valid = to_dmatrix(pd.read_parquet(valid_file), feature_set, use_case)
    result = tune_xgboost(train, valid, use_case.task, use_case.tuning, trials or use_case.trials)
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.booster.save_model(out / MODEL_FILE)
    summary = {
        "algorithm": "xgboost",
        "xgboost_version": xgb.__version__,
        "params": {**base_params(use_case.task, use_case.tuning.seed), **result.params},
        "num_boost_round": result.best_iteration + 1,
        "valid_metric": result.metric,
        "valid_score": result.valid_score,
        "trials": result.trials,
        "feature_set_version": feature_set.version,
    }
    (out / TRAINING_FILE).write_text(json.dumps(summary, indent=1))
    print(f"train: best valid {result.metric} {result.valid_score:.4f} after {result.trials} trials, "
          f"{result.best_iteration + 1} rounds")
    return summary
