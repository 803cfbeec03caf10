"""One declarative search space per model family, read by Optuna locally and by Katib on the cluster.

A space is a tuple of parameters (float, int or categorical, with bounds and a log
scale where it matters). `suggest` draws a parameter set from an Optuna trial;
`katib_parameters` writes the same space as Katib `ParameterSpec`s; `parse` turns
Katib's string assignments back into typed values, refusing anything outside the space.
A space's `portfolio` (flowline/portfolios.py) holds the points its Optuna search tries first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import optuna
from kubeflow.katib import V1beta1FeasibleSpace, V1beta1ParameterSpec

from flowline import portfolios
from flowline.use_case import FAMILIES, TuningSpec


@dataclass(frozen=True)
class FloatParameter:
    name: str
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntParameter:
    name: str
    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class CategoricalParameter:
    name: str
    choices: tuple[Any, ...]


Parameter = Union[FloatParameter, IntParameter, CategoricalParameter]


class SearchSpaceError(ValueError):
    """A parameter set that does not belong to its space."""


@dataclass(frozen=True)
class SearchSpace:
    family: str
    parameters: tuple[Parameter, ...]
    portfolio: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)  # warm starts, tried first in order

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one parameter set from an Optuna trial (its distributions are `optuna_distributions()`)."""
        out: dict[str, Any] = {}
        for p in self.parameters:
            if isinstance(p, FloatParameter):
                out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
            elif isinstance(p, IntParameter):
                out[p.name] = trial.suggest_int(p.name, p.low, p.high, log=p.log)
            else:
                out[p.name] = trial.suggest_categorical(p.name, p.choices)
        return out

    def optuna_distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        out = {}
        for p in self.parameters:
            if isinstance(p, FloatParameter):
                out[p.name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
            elif isinstance(p, IntParameter):
                out[p.name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log)
            else:
                out[p.name] = optuna.distributions.CategoricalDistribution(p.choices)
        return out

    def katib_parameters(self) -> list[V1beta1ParameterSpec]:
        """The space as Katib parameters; log-scaled ones use Katib's logUniform distribution."""
        out = []
        for p in self.parameters:
            if isinstance(p, CategoricalParameter):
                space = V1beta1FeasibleSpace(list=[str(c) for c in p.choices])
                kind = "categorical"
            else:
                space = V1beta1FeasibleSpace(min=str(p.low), max=str(p.high),
                                             distribution="logUniform" if p.log else "uniform")
                kind = "double" if isinstance(p, FloatParameter) else "int"
            out.append(V1beta1ParameterSpec(name=p.name, parameter_type=kind, feasible_space=space))
        return out

    def parse(self, assignments: Mapping[str, Any]) -> dict[str, Any]:
        """Typed values from assignments (Katib gives strings), checked against the space."""
        unknown = sorted(set(assignments) - {p.name for p in self.parameters})
        if unknown:
            raise SearchSpaceError(f"{self.family}: unknown parameter {unknown[0]!r}")
        out = {}
        for p in self.parameters:
            if p.name not in assignments:
                raise SearchSpaceError(f"{self.family}: missing parameter {p.name!r}")
            raw = assignments[p.name]
            if isinstance(p, CategoricalParameter):
                matches = [c for c in p.choices if str(c) == str(raw)]
                if not matches:
                    raise SearchSpaceError(f"{self.family}: {p.name}={raw!r} is not one of {list(p.choices)}")
                out[p.name] = matches[0]
                continue
            try:
                value = float(raw) if isinstance(p, FloatParameter) else int(float(raw))
            except (TypeError, ValueError):
                raise SearchSpaceError(f"{self.family}: {p.name}={raw!r} is not a number") from None
            if not p.low <= value <= p.high:
                raise SearchSpaceError(f"{self.family}: {p.name}={value} is outside [{p.low}, {p.high}]")
            out[p.name] = value
        return out


XGBOOST = SearchSpace("xgboost", (
    FloatParameter("eta", 0.01, 0.3, log=True),
    IntParameter("max_depth", 2, 8),
    FloatParameter("min_child_weight", 0.5, 50.0, log=True),
    FloatParameter("subsample", 0.5, 1.0),
    FloatParameter("colsample_bytree", 0.4, 1.0),
    FloatParameter("lambda", 1e-3, 30.0, log=True),
    FloatParameter("alpha", 1e-3, 10.0, log=True),
), portfolios.XGBOOST)

FOREST = SearchSpace("forest", (
    IntParameter("num_parallel_tree", 50, 400, log=True),
    IntParameter("max_depth", 4, 14),
    FloatParameter("min_child_weight", 0.5, 20.0, log=True),
    FloatParameter("subsample", 0.5, 0.95),
    FloatParameter("colsample_bynode", 0.3, 1.0),
), portfolios.FOREST)

# LightGBM grows trees leaf-wise: num_leaves bounds a tree's size (max_depth is left unlimited), and
# min_child_samples is the fewest rows a leaf may hold. Rows are bagged every round (bagging_freq 1,
# flowline/models/lightgbm.py), so bagging_fraction 1.0 means no bagging. The categorical splits keep
# LightGBM's defaults (max_cat_to_onehot 4, cat_smooth 10, min_data_per_group 100).
LIGHTGBM = SearchSpace("lightgbm", (
    FloatParameter("learning_rate", 0.01, 0.3, log=True),
    IntParameter("num_leaves", 4, 128, log=True),
    IntParameter("min_child_samples", 5, 100, log=True),
    FloatParameter("feature_fraction", 0.4, 1.0),
    FloatParameter("bagging_fraction", 0.5, 1.0),
    FloatParameter("lambda_l1", 1e-3, 10.0, log=True),
    FloatParameter("lambda_l2", 1e-3, 30.0, log=True),
), portfolios.LIGHTGBM)

# CatBoost grows oblivious trees: depth sets the tree (2**depth leaves). random_strength scales the noise
# added to split scores; bagging_temperature the Bayesian bootstrap's row weights (0: every row weighs 1).
CATBOOST = SearchSpace("catboost", (
    FloatParameter("learning_rate", 0.01, 0.3, log=True),
    IntParameter("depth", 3, 10),
    FloatParameter("l2_leaf_reg", 0.5, 30.0, log=True),
    FloatParameter("random_strength", 0.01, 10.0, log=True),
    FloatParameter("bagging_temperature", 0.0, 1.0),
), portfolios.CATBOOST)

LINEAR_BINARY = SearchSpace("linear", (
    FloatParameter("C", 1e-3, 10.0, log=True),
    CategoricalParameter("l1_ratio", (0.0, 1.0)),  # 0: L2 (ridge) penalty, 1: L1 (lasso)
    CategoricalParameter("class_weight", ("none", "balanced")),
), portfolios.LINEAR_BINARY)

LINEAR_REGRESSION = SearchSpace("linear", (FloatParameter("alpha", 1e-3, 1e3, log=True),),
                                portfolios.LINEAR_REGRESSION)

# Tweedie regression (a GLM with log link): alpha is the L2 penalty per row, so far smaller.
LINEAR_TWEEDIE = SearchSpace("linear", (FloatParameter("alpha", 1e-6, 1.0, log=True),), portfolios.LINEAR_TWEEDIE)

# Tuned class weighting for imbalanced binary labels: the weight of a positive row, in these families.
POSITIVE_WEIGHT = FloatParameter("scale_pos_weight", 1.0, 50.0, log=True)
WEIGHTED_FAMILIES = ("xgboost", "forest", "lightgbm", "catboost")

# The NAS space: an MLP's architecture (depth, then one width per layer; widths past
# `depth` are ignored) with its activation, dropout and learning rate.
MLP_ARCHITECTURE = SearchSpace("mlp", (
    IntParameter("depth", 1, 3),
    IntParameter("width_1", 16, 256, log=True),
    IntParameter("width_2", 16, 256, log=True),
    IntParameter("width_3", 16, 256, log=True),
    CategoricalParameter("activation", ("relu", "tanh", "elu")),
    FloatParameter("dropout", 0.0, 0.5),
    FloatParameter("learning_rate", 1e-4, 1e-2, log=True),
), portfolios.MLP)


def search_space(family: str, task: str, tuning: TuningSpec) -> SearchSpace:
    """The space of `family` for a binary or regression task, with the use case's objective and weighting."""
    if family == "linear":
        if task == "binary":
            return LINEAR_BINARY  # its class_weight choice ("balanced") is the linear family's weighting
        return LINEAR_TWEEDIE if tuning.objective == "tweedie" else LINEAR_REGRESSION
    spaces = {"xgboost": XGBOOST, "forest": FOREST, "mlp": MLP_ARCHITECTURE, "lightgbm": LIGHTGBM, "catboost": CATBOOST}
    if family not in spaces:
        raise SearchSpaceError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    space = spaces[family]
    if task == "binary" and tuning.class_weighting and family in WEIGHTED_FAMILIES:
        return SearchSpace(space.family, (*space.parameters, POSITIVE_WEIGHT),
                           tuple({**point, POSITIVE_WEIGHT.name: portfolios.UNWEIGHTED} for point in space.portfolio))
    return space
