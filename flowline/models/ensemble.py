"""The served model: one candidate, or a blend of the best ones, and how it is chosen.

A model is always an `Ensemble`: members with non-negative weights and a bias, blended
on the margin (log-odds for binary tasks, so the blend is a stacked logistic
regression; the prediction for regression). A single model is an ensemble of one with
weight 1 and bias 0. Margins add, so contributions add: the blend's explanation is the
weighted sum of its members'. A regression model of an amount that cannot be negative
(spend) records a `floor` of 0: its margin (its prediction) is clipped there, so a
squared-error member never predicts a customer below nothing. The clip is a term of its own
(`floor_adjustment`: the floor less the unclipped margin, 0 for a row above it), so the base
value stays the model's expected value for every row and base + contributions + floor
adjustment = the prediction.

Selection, on held-out predictions (training.py makes them out of fold): candidates
are ranked by their score; for k = 1 .. `ensemble.top_k`, the blend of the top k is
scored by cross-fitting (weights fitted on the other folds, scored on the held-out
fold, pooled), so a blend never scores itself on the rows that chose its weights, and
k = 1, the best single model, is scored the same way. A blend is used only when it
beats the best single model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from scipy.optimize import lsq_linear, minimize

from flowline.models.candidate import score_name
from flowline.models.families import MODEL_FAMILIES, CandidateModel, ColumnSubset, validation_score
from flowline.splitting import fold_splits
from flowline.use_case import EnsembleSpec

FORMAT = "flowline.model/v1"
MODEL_FILE = "model.json"
BLEND_RIDGE = 1e-4  # a little shrinkage keeps the blend weights stable when members agree


class ModelError(ValueError):
    """A model folder is unreadable or names an unknown family."""


@dataclass
class Member:
    """One model of the blend. `trial` numbers it among its family's averaged trials (1 the search's best) when
    the family is served as the average of several; `fold` among its family's fold models when the family is
    bagged. training.py gives each model the family's weight over the number of models."""

    family: str
    model: CandidateModel
    weight: float
    fold: int | None = None
    trial: int | None = None

    @property
    def name(self) -> str:
        trial = "" if self.trial is None else f"-trial{self.trial}"
        fold = "" if self.fold is None else f"-fold{self.fold}"
        return f"{self.family}{trial}{fold}"


class Ensemble:
    """margin(x) = bias + sum_k weight_k * margin_k(x), clipped at `floor` when a regression model has one;
    binary predictions are sigmoid(margin), regression predictions the margin."""

    def __init__(self, task: str, members: list[Member], bias: float = 0.0, floor: float | None = None) -> None:
        self.task, self.members, self.bias = task, list(members), float(bias)
        self.floor = None if floor is None else float(floor)

    @property
    def families(self) -> list[str]:
        return [member.family for member in self.members]

    def margin(self, x: np.ndarray) -> np.ndarray:
        total = np.full(len(x), self.bias)
        for member in self.members:
            total += member.weight * member.model.margin(x)
        return total if self.floor is None else np.maximum(total, self.floor)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of the positive class (binary) or predictions (regression), float64."""
        return self.from_margin(self.margin(x))

    def from_margin(self, margin: np.ndarray) -> np.ndarray:
        """What `predict` answers for rows of this `margin` (as `margin` gives it): the logistic of it (binary)."""
        return 1.0 / (1.0 + np.exp(-margin)) if self.task == "binary" else margin

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(rows x (features + 1)) in margin units; the last column is the base value, the model's expected value.
        Rows sum to the unclipped margin: the margin, less `floor_adjustment`."""
        total = sum(member.weight * member.model.contributions(x) for member in self.members)
        total[:, -1] += self.bias
        return total

    def floor_adjustment(self, contributions: np.ndarray) -> np.ndarray:
        """Per row of `contributions` (as `contributions` gives them), what the clip at the floor adds to reach the
        margin: the floor less the unclipped margin for a row below it, else 0 (always 0 without a floor)."""
        unclipped = contributions.sum(axis=1)
        return np.zeros(len(unclipped)) if self.floor is None else np.maximum(unclipped, self.floor) - unclipped

    def column_contributions(self, x: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contributions added up to raw columns by `owners` (FeatureSet.owners): (rows x columns), the base value
        per row, and the floor adjustment per row (base + contributions + adjustment = margin)."""
        contributions = self.contributions(x)
        return contributions[:, :-1] @ owners, contributions[:, -1], self.floor_adjustment(contributions)

    def set_threads(self, threads: int) -> None:
        for member in self.members:
            member.model.set_threads(threads)

    def describe(self) -> dict:
        return {"task": self.task, "bias": self.bias, "floor": self.floor,
                "members": family_weights({"family": m.family, "weight": m.weight, "trial": m.trial, "fold": m.fold}
                                          for m in self.members)}

    def save(self, folder: str | Path) -> None:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        members = []
        for m in self.members:
            entry = {"family": m.family, "weight": m.weight, "files": m.model.save(out, m.name)}
            entry.update({key: value for key, value in (("trial", m.trial), ("fold", m.fold)) if value is not None})
            if isinstance(m.model, ColumnSubset):
                entry.update(columns=list(m.model.columns), width=m.model.width)
            members.append(entry)
        (out / MODEL_FILE).write_text(json.dumps({"format": FORMAT, "task": self.task, "bias": self.bias,
                                                  "floor": self.floor, "members": members}, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> Ensemble:
        path = Path(folder)
        try:
            document = json.loads((path / MODEL_FILE).read_text())
        except (OSError, ValueError) as error:
            raise ModelError(f"{path / MODEL_FILE} is unreadable: {error}") from None
        if document.get("format") != FORMAT:
            raise ModelError(f"{path / MODEL_FILE}: format {document.get('format')!r}, expected {FORMAT!r}")
        members = []
        for entry in document["members"]:
            if entry["family"] not in MODEL_FAMILIES:
                raise ModelError(f"{path / MODEL_FILE}: unknown model family {entry['family']!r}")
            try:
                model = MODEL_FAMILIES[entry["family"]].load(path, entry["files"], document["task"])
            except Exception as error:  # noqa: BLE001 - each library raises its own kind for a file it cannot read
                raise ModelError(f"{path}: {entry['family']} model {entry['files']} is unreadable: {error}") from None
            if "columns" in entry:
                model = ColumnSubset(model, tuple(entry["columns"]), entry["width"])
            numbers = {key: entry.get(key) for key in ("fold", "trial")}  # absent: refitted, or the best trial alone
            for key, number in numbers.items():
                if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
                    raise ModelError(f"{path / MODEL_FILE}: {key} {number!r}, expected a whole number or none")
            members.append(Member(entry["family"], model, float(entry["weight"]), **numbers))
        floor = document.get("floor")  # absent in packages written before floors
        if floor is not None and (document["task"] == "binary" or not isinstance(floor, (int, float))):
            raise ModelError(f"{path / MODEL_FILE}: floor {floor!r}, expected a number on a regression model or null")
        return cls(document["task"], members, document["bias"], floor)


def family_weights(members: Iterable[Mapping]) -> list[dict]:
    """One entry per family of members as model.json lists them (family, weight, and trial and fold where
    numbered): its weight (its models' added up) and, where it has several models, how many trials are
    averaged (`trials`) and, when bagged, how many fold models each has (`folds`)."""
    families: dict[str, dict] = {}
    for member in members:
        entry = families.setdefault(member["family"], {"family": member["family"], "weight": 0.0})
        entry["weight"] += member["weight"]
        for key, number in (("trials", member.get("trial")), ("folds", member.get("fold"))):
            if number is not None:
                entry[key] = max(entry.get(key, 0), number)
    return list(families.values())


def fit_blend(task: str, margins: np.ndarray, y: np.ndarray, non_negative: bool = False) -> tuple[np.ndarray, float]:
    """Non-negative weights and a bias for blending member margins (columns) on rows with labels `y`.

    Binary: minimises log loss of sigmoid(bias + margins @ w), a logistic regression
    constrained to w >= 0. Regression: least squares with w >= 0; with `non_negative`
    (members that predict a non-negative amount, such as spend) the bias is >= 0 too, so
    the blend never predicts below zero.
    """
    k = margins.shape[1]
    if task != "binary":
        design = np.hstack([margins, np.ones((len(margins), 1))])
        bounds = (np.r_[np.zeros(k), 0.0 if non_negative else -np.inf], np.full(k + 1, np.inf))
        solution = lsq_linear(design, y, bounds=bounds).x
        return solution[:k], float(solution[k])
    sign = 2.0 * y - 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = margins @ theta[:k] + theta[k]
        value = np.mean(np.logaddexp(0.0, -sign * z)) + BLEND_RIDGE * theta[:k] @ theta[:k]
        dz = -sign / (1.0 + np.exp(sign * z)) / len(z)
        gradient = np.r_[margins.T @ dz + 2 * BLEND_RIDGE * theta[:k], dz.sum()]
        return value, gradient

    start = np.r_[np.full(k, 1.0 / k), 0.0]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * k + [(None, None)])
    return result.x[:k], float(result.x[k])


def cross_fitted_score(task: str, metric: str, margins: np.ndarray, y: np.ndarray, folds: int, seed: int,
                       non_negative: bool = False) -> float:
    """The blend's validation score with every row scored by weights fitted without it."""
    blended = np.empty(len(y))
    for fit_rows, held_out in fold_splits(task, y, folds, seed):
        weights, bias = fit_blend(task, margins[fit_rows], y[fit_rows], non_negative)
        blended[held_out] = margins[held_out] @ weights + bias
    return validation_score(task, metric, y, blended)


def choose_blend(task: str, metric: str, margins: dict[str, np.ndarray], y: np.ndarray, spec: EnsembleSpec,
                 seed: int, non_negative: bool = False) -> tuple[list[tuple[str, float]], float, dict]:
    """The best single candidate, or the best blend of the top k when it beats it.

    `margins` holds each family's held-out margins for the rows with labels `y`; `metric` (tuning.metric):
    what candidates and blends are scored by; `non_negative`: they are non-negative amounts, and so must the
    blend be (fit_blend).
    Returns the members as (family, weight), the bias, and a report saying why.
    """
    scores = {family: validation_score(task, metric, y, values) for family, values in margins.items()}
    ranked = sorted(scores, key=lambda family: -scores[family])
    stacked = np.column_stack([margins[family] for family in ranked])
    blends = {k: cross_fitted_score(task, metric, stacked[:, :k], y, spec.folds, seed, non_negative)
              for k in range(1, min(spec.top_k, len(ranked)) + 1)}
    best_k = max(blends, key=blends.get)
    scored_by = score_name(task, metric)
    report = {"scored_by": scored_by, "ranked": [{"family": f, "held_out_score": scores[f]} for f in ranked],
              "blends": [{"members": ranked[:k], "cross_fitted_score": s} for k, s in blends.items()]}
    if best_k == 1:
        report.update(selected=ranked[0], reason=(
            f"{ranked[0]} scores {scored_by} {scores[ranked[0]]:.4f} held out; no blend of the top {spec.top_k} "
            f"beats it cross-fitted"))
        return [(ranked[0], 1.0)], 0.0, report
    weights, bias = fit_blend(task, stacked[:, :best_k], y, non_negative)
    members = [(family, float(weight)) for family, weight in zip(ranked[:best_k], weights) if weight > 0]
    report.update(selected="ensemble", reason=(
        f"the blend of {' + '.join(f for f, _ in members)} scores {scored_by} {blends[best_k]:.4f} cross-fitted, "
        f"above {ranked[0]} alone ({blends[1]:.4f})"))
    return members, bias, report
