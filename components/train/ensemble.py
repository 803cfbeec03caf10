"""The served model: one candidate, or a blend of the best ones, and how it is chosen.

A model is always an `Ensemble`: members with non-negative weights and a bias, blended
on the margin (log-odds for binary tasks, so the blend is a stacked logistic
regression; the prediction for regression). A single model is an ensemble of one with
weight 1 and bias 0. Margins add, so contributions add: the blend's explanation is the
weighted sum of its members'.

Selection, on the validation split: candidates are ranked by their validation score;
for k = 2 .. `ensemble.top_k`, the blend of the top k is scored by cross-fitting on
valid (weights fitted on the other folds, scored on the held-out fold, pooled), so the
blend does not score itself on the rows that chose its weights. The best blend is
used only when it beats the best single model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import lsq_linear, minimize
from sklearn.model_selection import KFold, StratifiedKFold

from flowline.components.train.models import MODEL_FAMILIES, CandidateModel, Fitted, validation_score
from flowline.pipelines.use_case import EnsembleSpec

FORMAT = "flowline.model/v1"
MODEL_FILE = "model.json"
BLEND_RIDGE = 1e-4  # a little shrinkage keeps the blend weights stable when members agree


class ModelError(ValueError):
    """A model folder is unreadable or names an unknown family."""


@dataclass
class Member:
    family: str
    model: CandidateModel
    weight: float


class Ensemble:
    """margin(x) = bias + sum_k weight_k * margin_k(x); binary predictions are sigmoid(margin)."""

    def __init__(self, task: str, members: list[Member], bias: float = 0.0) -> None:
        self.task, self.members, self.bias = task, list(members), float(bias)

    @property
    def families(self) -> list[str]:
        return [member.family for member in self.members]

    def margin(self, x: np.ndarray) -> np.ndarray:
        total = np.full(len(x), self.bias)
        for member in self.members:
            total += member.weight * member.model.margin(x)
        return total

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of the positive class (binary) or predictions (regression), float64."""
        margin = self.margin(x)
        return 1.0 / (1.0 + np.exp(-margin)) if self.task == "binary" else margin

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(rows x (features + 1)) in margin units; the last column is the base value. Rows sum to the margin."""
        total = sum(member.weight * member.model.contributions(x) for member in self.members)
        total[:, -1] += self.bias
        return total

    def set_threads(self, threads: int) -> None:
        for member in self.members:
            member.model.set_threads(threads)

    def describe(self) -> dict:
        return {"task": self.task, "bias": self.bias,
                "members": [{"family": m.family, "weight": m.weight} for m in self.members]}

    def save(self, folder: str | Path) -> None:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        members = [{"family": m.family, "weight": m.weight, "files": m.model.save(out, m.family)}
                   for m in self.members]
        (out / MODEL_FILE).write_text(json.dumps({"format": FORMAT, "task": self.task, "bias": self.bias,
                                                  "members": members}, indent=1))

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
            model = MODEL_FAMILIES[entry["family"]].load(path, entry["files"], document["task"])
            members.append(Member(entry["family"], model, float(entry["weight"])))
        return cls(document["task"], members, document["bias"])


def fit_blend(task: str, margins: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative weights and a bias for blending member margins (columns) on rows with labels `y`.

    Binary: minimises log loss of sigmoid(bias + margins @ w), a logistic regression
    constrained to w >= 0. Regression: least squares with w >= 0.
    """
    k = margins.shape[1]
    if task != "binary":
        design = np.hstack([margins, np.ones((len(margins), 1))])
        bounds = (np.r_[np.zeros(k), -np.inf], np.full(k + 1, np.inf))
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


def cross_fitted_score(task: str, margins: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    """The blend's validation score with every row scored by weights fitted without it."""
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if task == "binary" else KFold(
        folds, shuffle=True, random_state=seed)
    blended = np.empty(len(y))
    for fit_rows, held_out in splitter.split(margins, y if task == "binary" else None):
        weights, bias = fit_blend(task, margins[fit_rows], y[fit_rows])
        blended[held_out] = margins[held_out] @ weights + bias
    return validation_score(task, y, blended)


def select_model(task: str, candidates: dict[str, Fitted], x_valid: np.ndarray, y_valid: np.ndarray,
                 spec: EnsembleSpec, seed: int) -> tuple[Ensemble, dict]:
    """The best single candidate, or the best blend of the top k when it beats it; and why.

    Blends of k = 1 .. top_k are all scored by the same cross-fitting (k = 1 is the best
    single model under an affine recalibration per fold), so a blend is compared with
    the single model on equal terms.
    """
    ranked = sorted(candidates, key=lambda family: -candidates[family].valid_score)
    margins = np.column_stack([candidates[family].model.margin(x_valid) for family in ranked])
    scores = {k: cross_fitted_score(task, margins[:, :k], y_valid, spec.folds, seed)
              for k in range(1, min(spec.top_k, len(ranked)) + 1)}
    best_k = max(scores, key=scores.get)
    report = {"ranked": [{"family": f, "valid_score": candidates[f].valid_score} for f in ranked],
              "blends": [{"members": ranked[:k], "cross_fitted_score": s} for k, s in scores.items()]}
    if best_k > 1:
        weights, bias = fit_blend(task, margins[:, :best_k], y_valid)
        members = [Member(f, candidates[f].model, float(w)) for f, w in zip(ranked[:best_k], weights) if w > 0]
        ensemble = Ensemble(task, members, bias)
        report.update(selected="ensemble", reason=(
            f"the blend of {' + '.join(m.family for m in members)} scores {scores[best_k]:.4f} cross-fitted on "
            f"valid, above {ranked[0]} alone ({scores[1]:.4f})"))
    else:
        ensemble = Ensemble(task, [Member(ranked[0], candidates[ranked[0]].model, 1.0)])
        report.update(selected=ranked[0], reason=(
            f"{ranked[0]} scores {candidates[ranked[0]].valid_score:.4f} on valid; no blend beats it cross-fitted"))
    report["model"] = ensemble.describe()
    return ensemble, report
