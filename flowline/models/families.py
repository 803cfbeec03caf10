"""The candidate model families: fit from one parameter set, score, explain, save without pickle.

| family | what | saved as |
|---|---|---|
| xgboost | gradient-boosted trees, early-stopped on valid | XGBoost's native JSON |
| forest | a random forest: XGBoost's random-forest mode (one round of `num_parallel_tree` trees, rows and columns subsampled per node) | XGBoost's native JSON |
| linear | logistic regression (binary) or ridge (regression) on standardised features | JSON coefficients |
| mlp | a NumPy multilayer perceptron (flowline/models/mlp.py) | JSON weights |
| lightgbm | LightGBM's gradient-boosted trees, early-stopped on valid, with its native categorical splits (flowline/models/lightgbm.py) | LightGBM's native text model |
| catboost | CatBoost's gradient-boosted oblivious trees, early-stopped on valid (flowline/models/catboost.py) | CatBoost's native binary model (.cbm) |

The tree families (TREE_FAMILIES) read a FeatureSet's category codes where it has them
(`features.native_categorical`), the others its encodings (ColumnSubset).

Every model gives a **margin** (log-odds for binary tasks, the prediction for
regression) and **contributions**: per-feature attributions in margin units whose sum
plus the base value is the margin (TreeSHAP for trees, exact linear SHAP for linear
models, permutation Shapley values from the training mean for the MLP). Blends add
margins, so their contributions add up too.

Regression with `tuning.objective: tweedie` fits xgboost, forest, lightgbm, catboost and linear (a
Tweedie GLM) with a log link. Their margin is still the prediction, exp(log-scale score), and
their log-scale attributions are rescaled to prediction units, each feature keeping its
share, so that they too add up to the prediction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import xgboost as xgb
from sklearn.linear_model import LogisticRegression, Ridge, TweedieRegressor

from flowline.features.kinds import FeatureLayout
from flowline.models.booster_predict import DensePredictor
from flowline.models.candidate import (
    REPORT_EVERY,
    CandidateModel,
    Fitted,
    Report,
    TrainingData,
    log_link_contributions,
    validation_score,
)
from flowline.models.catboost import CatBoostModel
from flowline.models.lightgbm import LightGBMModel
from flowline.models.mlp import MLPNetwork, hidden_layers, train_mlp
from flowline.splitting import SEARCH_FOLDS, fold_splits
from flowline.use_case import TuningSpec

SHAP_PERMUTATIONS = 32  # MLP: permutations, each with its reverse, for the Shapley estimate (8 left churn 20-50 % off)
TREE_FAMILIES = ("xgboost", "forest", "lightgbm")  # they read category codes (FeatureLayout.trees)
BOOSTED_FAMILIES = ("xgboost", "lightgbm", "catboost")  # their iterations are boosting rounds, early-stopped on valid
TRIAL_FOLDS = SEARCH_FOLDS  # trials scored by cross-validation on small data (tuning.cv_max_rows)
XGBOOST_METRICS = {"roc_auc": "auc", "auprc": "aucpr"}  # tuning.metric as XGBoost logs it (pruning reports)


def objective_metric(task: str, metric: str) -> tuple[str, str]:
    """The validation metric's printed name and its direction (for logs and Katib's objective); `metric` is
    tuning.metric, a binary task's."""
    return (f"valid_{metric}", "maximize") if task == "binary" else ("valid_rmse", "minimize")


def reported_value(task: str, score: float) -> float:
    """A score (higher is better) as the objective metric reports it (RMSE is positive)."""
    return score if task == "binary" else -score


class _BoosterModel(CandidateModel):
    def __init__(self, booster: xgb.Booster, task: str) -> None:
        self.booster, self.task = booster, task
        self.log_link = json.loads(booster.save_config())["learner"]["objective"]["name"] == "reg:tweedie"
        # Regression: the prediction itself, with a Tweedie model's log link applied (its margin is the log).
        self._predict = DensePredictor(booster, margin=task == "binary")

    def margin(self, x: np.ndarray) -> np.ndarray:
        return self._predict(x)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        parts = self.booster.predict(xgb.DMatrix(x), pred_contribs=True).astype(np.float64)
        return log_link_contributions(parts) if self.log_link else parts

    def save(self, folder: Path, prefix: str) -> list[str]:
        name = f"{prefix}.json"
        self.booster.save_model(folder / name)
        return [name]

    @classmethod
    def load(cls, folder: Path, files: list[str], task: str) -> CandidateModel:
        return cls(xgb.Booster(model_file=str(folder / files[0])), task)

    def set_threads(self, threads: int) -> None:
        self.booster.set_param({"nthread": threads})

    def gains(self) -> dict[int, float]:
        """Total gain per column the model split on (its own column index)."""
        return {int(key[1:]): gain for key, gain in self.booster.get_score(importance_type="total_gain").items()}


def _matrix(x: np.ndarray, y: np.ndarray, feature_types: Optional[tuple[str, ...]]) -> xgb.DMatrix:
    """A DMatrix; with feature types, category codes ("c") get XGBoost's native categorical splits."""
    if feature_types is None:
        return xgb.DMatrix(x, label=y)
    return xgb.DMatrix(x, label=y, feature_types=list(feature_types), enable_categorical=True)


def _booster_params(task: str, tuning: TuningSpec, params: dict) -> dict:
    if task == "binary":
        objective = {"objective": "binary:logistic",
                     "eval_metric": [XGBOOST_METRICS[tuning.metric], "logloss"]}  # early stopping: the last
    elif tuning.objective == "tweedie":
        objective = {"objective": "reg:tweedie", "tweedie_variance_power": tuning.tweedie_power,
                     "eval_metric": ["rmse"]}
    else:
        objective = {"objective": "reg:squarederror", "eval_metric": ["rmse"]}
    # No nthread: XGBoost takes OpenMP's limit (all cores, or OMP_NUM_THREADS).
    return {**objective, "tree_method": "hist", "seed": tuning.seed, **params}


class _StopEarly(xgb.callback.EarlyStopping):
    """XGBoost's early stopping (on the last metric: the log loss, or RMSE), which first passes the validation score
    to `report`, if given, every REPORT_EVERY rounds, numbering the reports 1, 2, ...

    One callback, not two: XGBoost keeps callbacks in a set and stops calling them once one says stop, so with a
    separate reporter whether the round training stopped on was reported (and so whether the pruner saw it)
    depended on the callbacks' memory addresses, and a seeded search could differ from run to run."""

    def __init__(self, rounds: int, task: str, metric: str, report: Optional[Report]) -> None:
        super().__init__(rounds=rounds)
        self.task, self.logged, self.report = task, XGBOOST_METRICS[metric] if task == "binary" else "rmse", report

    def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:
        if self.report and (epoch + 1) % REPORT_EVERY == 0:
            value = evals_log["valid"][self.logged][-1]
            self.report((epoch + 1) // REPORT_EVERY, value if self.task == "binary" else -value)
        return super().after_iteration(model, epoch, evals_log)


class XGBoostModel(_BoosterModel):
    family = "xgboost"

    @classmethod
    def fit(cls, params: dict, data: TrainingData, tuning: TuningSpec, report: Optional[Report] = None) -> Fitted:
        valid = _matrix(data.x_valid, data.y_valid, data.feature_types)
        booster = xgb.train(
            _booster_params(data.task, tuning, params), _matrix(data.x_train, data.y_train, data.feature_types),
            num_boost_round=tuning.max_boost_rounds, evals=[(valid, "valid")], verbose_eval=False,
            callbacks=[_StopEarly(tuning.early_stopping_rounds, data.task, tuning.metric, report)],
        )
        rounds = booster.best_iteration + 1
        model = cls(booster[:rounds], data.task)
        score = validation_score(data.task, tuning.metric, data.y_valid, model.margin(data.x_valid))
        return Fitted(model, score, rounds)

    @classmethod
    def refit(cls, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
              tuning: TuningSpec, feature_types: Optional[tuple[str, ...]] = None) -> CandidateModel:
        booster = xgb.train(_booster_params(task, tuning, params), _matrix(x, y, feature_types),
                            num_boost_round=iterations)
        return cls(booster, task)


class ForestModel(_BoosterModel):
    family = "forest"

    @classmethod
    def refit(cls, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
              tuning: TuningSpec, feature_types: Optional[tuple[str, ...]] = None) -> CandidateModel:
        forest = {"num_parallel_tree": int(params["num_parallel_tree"]), "max_depth": int(params["max_depth"]),
                  "min_child_weight": params["min_child_weight"], "subsample": params["subsample"],
                  "colsample_bynode": params["colsample_bynode"], "eta": 1.0,
                  **({"scale_pos_weight": params["scale_pos_weight"]} if "scale_pos_weight" in params else {})}
        booster = xgb.train(_booster_params(task, tuning, forest), _matrix(x, y, feature_types), num_boost_round=1)
        return cls(booster, task)


# liblinear's stopping tolerances. Its L1 solver (coordinate descent) converges slowly on near-collinear
# columns: on bank_marketing's 20,000-row search sample one fit took 10.6 s at the default 1e-4 and 4.0 s at
# 1e-3, for a valid ROC-AUC 0.00002 lower. L2 fits converge in under a second at the default, which stays.
L1_TOLERANCE, L2_TOLERANCE = 1e-3, 1e-4


class LinearModel(CandidateModel):
    """score = ((x - mean) / scale) . coef + intercept; the margin is the score, or exp(score) for a
    Tweedie GLM (log link). Contributions: coef_j * z_j, base: the intercept (exact SHAP values of a
    linear model, taken from the training mean), rescaled to prediction units under the log link.

    Under the log link the score is held to the range it took on the training rows
    (`score_range`): exp() of a linear score is unbounded, and one extreme customer must
    not be predicted millions. Contributions are shrunk in proportion when it is held."""

    family = "linear"

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float, task: str,
                 score_range: Optional[tuple[float, float]] = None) -> None:
        self.mean, self.scale, self.coef, self.intercept, self.task = mean, scale, coef, intercept, task
        self.score_range = score_range  # set for the log link only

    @property
    def log_link(self) -> bool:
        return self.score_range is not None

    def _standardized(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def _parts(self, x: np.ndarray) -> np.ndarray:
        """Per-feature scores with the intercept as the last column, rows summing to the (held) score."""
        parts = self._standardized(x) * self.coef
        if self.log_link:
            delta = parts.sum(axis=1)
            held = np.clip(self.intercept + delta, *self.score_range) - self.intercept
            parts *= np.divide(held, delta, out=np.ones_like(delta), where=delta != 0)[:, None]
        return np.hstack([parts, np.full((len(parts), 1), self.intercept)])

    def margin(self, x: np.ndarray) -> np.ndarray:
        score = self._parts(x).sum(axis=1)
        return np.exp(score) if self.log_link else score

    def contributions(self, x: np.ndarray) -> np.ndarray:
        parts = self._parts(x)
        return log_link_contributions(parts) if self.log_link else parts

    @classmethod
    def refit(cls, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
              tuning: TuningSpec, feature_types: Optional[tuple[str, ...]] = None) -> CandidateModel:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        if task == "binary":
            weighting = None if params["class_weight"] == "none" else params["class_weight"]
            l1 = float(params["l1_ratio"])
            estimator = LogisticRegression(C=params["C"], l1_ratio=l1, class_weight=weighting, solver="liblinear",
                                           tol=L1_TOLERANCE if l1 else L2_TOLERANCE, max_iter=1000,
                                           random_state=tuning.seed).fit(z, y)
            coef, intercept = estimator.coef_[0], float(estimator.intercept_[0])
        elif tuning.objective == "tweedie":
            estimator = TweedieRegressor(power=tuning.tweedie_power, alpha=params["alpha"], link="log",
                                         max_iter=1000).fit(z, y)
            scores = z @ estimator.coef_ + estimator.intercept_
            return cls(mean, scale, np.asarray(estimator.coef_, dtype=np.float64), float(estimator.intercept_),
                       task, score_range=(float(scores.min()), float(scores.max())))
        else:
            estimator = Ridge(alpha=params["alpha"]).fit(z, y)
            coef, intercept = estimator.coef_, float(estimator.intercept_)
        return cls(mean, scale, np.asarray(coef, dtype=np.float64), intercept, task)

    def save(self, folder: Path, prefix: str) -> list[str]:
        name = f"{prefix}.json"
        (folder / name).write_text(json.dumps({
            "mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
            "intercept": self.intercept, "log_link_score_range": self.score_range}))
        return [name]

    @classmethod
    def load(cls, folder: Path, files: list[str], task: str) -> CandidateModel:
        document = json.loads((folder / files[0]).read_text())
        return cls(np.asarray(document["mean"]), np.asarray(document["scale"]), np.asarray(document["coef"]),
                   document["intercept"], task, score_range=document.get("log_link_score_range"))


class MLPModel(CandidateModel):
    """The NAS family. Contributions: permutation Shapley values from the training mean (exactly additive)."""

    family = "mlp"

    def __init__(self, network: MLPNetwork, task: str) -> None:
        self.network, self.task = network, task

    def margin(self, x: np.ndarray) -> np.ndarray:
        return self.network.margin(x)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        baseline = self.network.mean
        width = x.shape[1]
        rng = np.random.default_rng(0)
        orders = [rng.permutation(width) for _ in range(SHAP_PERMUTATIONS)]
        orders += [order[::-1] for order in orders]
        # included[p, k, j]: feature j is taken from the row at step k of permutation p.
        ranks = np.stack([np.argsort(order) for order in orders])
        included = ranks[:, None, :] < np.arange(width + 1)[None, :, None]
        base_value = float(self.margin(baseline[None, :])[0])
        out = np.empty((len(x), width + 1))
        for row, values in enumerate(x):
            points = np.where(included, values, baseline).reshape(-1, width)
            path = self.margin(points).reshape(len(orders), width + 1)
            steps = np.diff(path, axis=1)  # steps[p, k]: the gain from adding feature orders[p][k]
            attribution = np.zeros(width)
            for order, gains in zip(orders, steps):
                attribution[order] += gains
            out[row, :width] = attribution / len(orders)
        out[:, width] = base_value
        return out

    @classmethod
    def _train(cls, params: dict, x: np.ndarray, y: np.ndarray, task: str, epochs: int, tuning: TuningSpec,
               valid: Optional[TrainingData] = None, report: Optional[Report] = None):
        return train_mlp(
            x, y, hidden=hidden_layers(params), activation=params["activation"], dropout=float(params["dropout"]),
            learning_rate=float(params["learning_rate"]), binary=task == "binary", max_epochs=epochs,
            seed=tuning.seed, x_valid=valid.x_valid if valid else None,
            score=(lambda margins: validation_score(task, tuning.metric, valid.y_valid, margins)) if valid else None,
            report=report, max_steps=tuning.mlp_max_steps,
        )

    @classmethod
    def fit(cls, params: dict, data: TrainingData, tuning: TuningSpec, report: Optional[Report] = None) -> Fitted:
        network, epochs, score = cls._train(params, data.x_train, data.y_train, data.task, tuning.max_epochs, tuning,
                                            data, report)
        return Fitted(cls(network, data.task), score, epochs)

    @classmethod
    def refit(cls, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
              tuning: TuningSpec, feature_types: Optional[tuple[str, ...]] = None) -> CandidateModel:
        network, _, _ = cls._train(params, x, y, task, iterations, tuning)
        return cls(network, task)

    def save(self, folder: Path, prefix: str) -> list[str]:
        name = f"{prefix}.json"
        (folder / name).write_text(json.dumps(self.network.to_dict()))
        return [name]

    @classmethod
    def load(cls, folder: Path, files: list[str], task: str) -> CandidateModel:
        return cls(MLPNetwork.from_dict(json.loads((folder / files[0]).read_text())), task)


class ColumnSubset(CandidateModel):
    """A family's model that reads some of the encoded columns (FeatureLayout): the tree families read
    the category codes, the others the encodings. Contributions come back at full width, zero for the
    columns it does not read, so that a blend's still add up."""

    def __init__(self, model: CandidateModel, columns: tuple[int, ...], width: int) -> None:
        self.model, self.columns, self.width = model, tuple(columns), width
        self.family, self.task = model.family, model.task

    def margin(self, x: np.ndarray) -> np.ndarray:
        return self.model.margin(np.asarray(x)[:, self.columns])

    def contributions(self, x: np.ndarray) -> np.ndarray:
        parts = self.model.contributions(np.asarray(x)[:, self.columns])
        out = np.zeros((len(parts), self.width + 1))
        out[:, list(self.columns)] = parts[:, :-1]
        out[:, -1] = parts[:, -1]
        return out

    def save(self, folder: Path, prefix: str) -> list[str]:
        return self.model.save(folder, prefix)

    def set_threads(self, threads: int) -> None:
        self.model.set_threads(threads)


MODEL_FAMILIES: dict[str, type[CandidateModel]] = {
    model.family: model for model in (XGBoostModel, LinearModel, ForestModel, MLPModel, LightGBMModel, CatBoostModel)
}


def _read_by(layout: Optional[FeatureLayout], family: str) -> tuple[Optional[tuple[int, ...]], Optional[tuple[str, ...]]]:
    """The columns `family` reads and their XGBoost types; (None, None) when it reads them all."""
    if layout is None:
        return None, None
    return (layout.trees, layout.tree_types) if family in TREE_FAMILIES else (layout.dense, None)


def fit_candidate(family: str, params: dict, data: TrainingData, tuning: TuningSpec,
                  report: Optional[Report] = None) -> Fitted:
    """Fit one family with one parameter set; `report(step, score)` sees intermediate validation scores."""
    columns, types = _read_by(data.layout, family)
    if columns is None:
        return MODEL_FAMILIES[family].fit(params, data, tuning, report)
    subset = TrainingData(data.task, data.x_train[:, columns], data.y_train, data.x_valid[:, columns], data.y_valid,
                          feature_types=types)
    fitted = MODEL_FAMILIES[family].fit(params, subset, tuning, report)
    return Fitted(ColumnSubset(fitted.model, columns, data.x_train.shape[1]), fitted.valid_score, fitted.iterations)


def cross_validated(data: TrainingData, tuning: TuningSpec) -> bool:
    """Whether trials on `data` are scored by cross-validation (trial_score): at most `tuning.cv_max_rows` rows."""
    return len(data.y_train) + len(data.y_valid) <= tuning.cv_max_rows


def trial_score(family: str, params: dict, data: TrainingData, tuning: TuningSpec,
                report: Optional[Report] = None) -> tuple[float, int]:
    """One trial's validation score and iterations. On valid; or, at most `tuning.cv_max_rows` train + valid rows,
    the mean over TRIAL_FOLDS seeded folds of train + valid, the iterations their mean (`report` sees the first
    fold's intermediate scores, so that pruning compares like with like)."""
    if not cross_validated(data, tuning):
        fitted = fit_candidate(family, params, data, tuning, report)
        return fitted.valid_score, fitted.iterations
    x, y = np.concatenate([data.x_train, data.x_valid]), np.concatenate([data.y_train, data.y_valid])
    scores, iterations = [], []
    for fold, (fit_rows, held_out) in enumerate(fold_splits(data.task, y, TRIAL_FOLDS, tuning.seed)):
        fold_data = TrainingData(data.task, x[fit_rows], y[fit_rows], x[held_out], y[held_out], data.layout,
                                 data.feature_types)
        fitted = fit_candidate(family, params, fold_data, tuning, report if fold == 0 else None)
        scores.append(fitted.valid_score)
        iterations.append(fitted.iterations)
    return float(np.mean(scores)), int(round(np.mean(iterations)))


def refit_candidate(family: str, params: dict, iterations: int, x: np.ndarray, y: np.ndarray, task: str,
                    tuning: TuningSpec, layout: Optional[FeatureLayout] = None) -> CandidateModel:
    """Fit one family on all of (x, y) for a fixed number of rounds or epochs (`layout`: the FeatureSet's)."""
    columns, types = _read_by(layout, family)
    if columns is None:
        return MODEL_FAMILIES[family].refit(params, iterations, x, y, task, tuning)
    model = MODEL_FAMILIES[family].refit(params, iterations, x[:, columns], y, task, tuning, types)
    return ColumnSubset(model, columns, x.shape[1])


def booster_gains(model: CandidateModel) -> dict[int, float]:
    """A tree family's total gain per encoded column (full-width index)."""
    if isinstance(model, ColumnSubset):
        return {model.columns[column]: gain for column, gain in model.model.gains().items()}
    return model.gains()
