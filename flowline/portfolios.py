"""Warm starts: per search space, a few configurations known to do well on tabular data.

Each family's search tries these first (flowline/search.py enqueues them), so a short budget starts
from good points before TPE explores. Every point names each parameter of its space and lies inside
it (tests/components/test_tune.py checks this against the spaces' Optuna distributions). Values are
the libraries' documented defaults or published default configurations, moved to the nearest bound
of our space where they fall outside it (noted); the best-known point comes first.
"""

from __future__ import annotations

from typing import Any

Point = dict[str, Any]

XGBOOST: tuple[Point, ...] = (
    # AutoGluon's default XGBoost: learning rate 0.1, otherwise XGBoost's defaults (alpha 0 -> our floor 1e-3).
    {"eta": 0.1, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
     "lambda": 1.0, "alpha": 1e-3},
    # XGBoost's own defaults (eta 0.3; alpha 0 -> 1e-3).
    {"eta": 0.3, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
     "lambda": 1.0, "alpha": 1e-3},
    # Probst, Boulesteix & Bischl (2019, "Tunability") data-based xgboost defaults (max_depth 13 -> our ceiling 8).
    {"eta": 0.018, "max_depth": 8, "min_child_weight": 2.06, "subsample": 0.839, "colsample_bytree": 0.752,
     "lambda": 0.982, "alpha": 1.113},
)

LIGHTGBM: tuple[Point, ...] = (
    # LightGBM's defaults (lambda_l1 and lambda_l2 0 -> our floor 1e-3; bagging_fraction 1.0: no bagging).
    {"learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 1.0,
     "bagging_fraction": 1.0, "lambda_l1": 1e-3, "lambda_l2": 1e-3},
    # AutoGluon's default LightGBM: learning rate 0.05, otherwise LightGBM's defaults.
    {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 1.0,
     "bagging_fraction": 1.0, "lambda_l1": 1e-3, "lambda_l2": 1e-3},
    # AutoGluon's "GBMLarge" configuration: big leaves, slow learning (min_data_in_leaf 3 -> our floor 5).
    {"learning_rate": 0.03, "num_leaves": 128, "min_child_samples": 5, "feature_fraction": 0.9,
     "bagging_fraction": 1.0, "lambda_l1": 1e-3, "lambda_l2": 1e-3},
)

CATBOOST: tuple[Point, ...] = (
    # CatBoost's defaults, at AutoGluon's learning rate for its CatBoost (0.05; CatBoost picks one from the rows).
    {"learning_rate": 0.05, "depth": 6, "l2_leaf_reg": 3.0, "random_strength": 1.0, "bagging_temperature": 1.0},
    # Shallower trees, stronger regularisation: a smoother model for small or noisy data.
    {"learning_rate": 0.03, "depth": 4, "l2_leaf_reg": 10.0, "random_strength": 1.0, "bagging_temperature": 1.0},
)

FOREST: tuple[Point, ...] = (
    # XGBoost's random-forest tutorial: 100 trees, subsample 0.8, colsample_bynode 0.8, max_depth 5 (min 4 here).
    {"num_parallel_tree": 100, "max_depth": 5, "min_child_weight": 1.0, "subsample": 0.8, "colsample_bynode": 0.8},
    # scikit-learn RandomForest's defaults as near as the space allows: 100 deep trees (depth unlimited -> our
    # ceiling 14), bootstrap-sized row samples (about 63% distinct rows), few features per split (sqrt -> 0.3).
    {"num_parallel_tree": 100, "max_depth": 14, "min_child_weight": 1.0, "subsample": 0.63, "colsample_bynode": 0.3},
)

LINEAR_BINARY: tuple[Point, ...] = (
    # scikit-learn LogisticRegression's defaults: C 1, L2 penalty, no class weights.
    {"C": 1.0, "l1_ratio": 0.0, "class_weight": "none"},
    # The same with scikit-learn's documented weighting for imbalanced classes, class_weight="balanced".
    {"C": 1.0, "l1_ratio": 0.0, "class_weight": "balanced"},
    # FLAML's L1 logistic regression learner (lrl1) starting point: C 1, L1 penalty.
    {"C": 1.0, "l1_ratio": 1.0, "class_weight": "none"},
)

LINEAR_REGRESSION: tuple[Point, ...] = (
    # scikit-learn Ridge's default alpha 1, then the rest of RidgeCV's default grid (0.1, 1, 10).
    {"alpha": 1.0}, {"alpha": 0.1}, {"alpha": 10.0},
)

LINEAR_TWEEDIE: tuple[Point, ...] = (
    # scikit-learn's insurance-claims example: TweedieRegressor alpha 0.1 for pure premium, PoissonRegressor alpha
    # 1e-4 for frequency; then TweedieRegressor's default alpha 1.
    {"alpha": 0.1}, {"alpha": 1e-4}, {"alpha": 1.0},
)

MLP: tuple[Point, ...] = (
    # scikit-learn MLPClassifier's defaults: one hidden layer of 100 relu units, Adam at 1e-3, no dropout (widths
    # past `depth` are ignored; they repeat the last one).
    {"depth": 1, "width_1": 100, "width_2": 100, "width_3": 100, "activation": "relu", "dropout": 0.0,
     "learning_rate": 1e-3},
    # fastai tabular_learner's default layers [200, 100], with fastai's default learning rate 1e-3.
    {"depth": 2, "width_1": 200, "width_2": 100, "width_3": 100, "activation": "relu", "dropout": 0.0,
     "learning_rate": 1e-3},
    # AutoGluon's tabular neural network defaults: 128 units a layer, dropout 0.1, learning rate 3e-4 (4 layers ->
    # our ceiling 3).
    {"depth": 3, "width_1": 128, "width_2": 128, "width_3": 128, "activation": "relu", "dropout": 0.1,
     "learning_rate": 3e-4},
)

# With class weighting the tree families also tune scale_pos_weight: the points start unweighted (1.0, the
# libraries' default) and TPE explores the weight from there.
UNWEIGHTED = 1.0
