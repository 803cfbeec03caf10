"""What drives the model: SHAP values per raw column, and LIME for the same instances.

SHAP values come from the model itself (models.py): TreeSHAP for the tree families,
exact linear SHAP for linear models, an approximate permutation estimate of the Shapley values for the MLP, blended
with the ensemble's weights. They are in margin units (log-odds for binary tasks, the
prediction for regression) and add up, with the base value, to the margin (a regression
clipped at its floor adds the clip, `floor_adjustment`, to reach it). Each
encoded feature's value is shared among the raw columns it reads (FeatureSet.owners),
so an explanation names the columns a request carries.

- global importance: mean |SHAP| per column over a seeded sample of test rows;
- dependence: SHAP value of a column against its value, for the top columns;
- local: SHAP values of a few seeded test instances, and LIME's weights for the same
  instances (a local linear model of the predicted probability, or prediction, around
  the instance, with categorical columns perturbed over their categories). Agreement is
  the Spearman rank correlation of |SHAP| and |LIME weight| over the union of each
  one's top columns, and whether both name the same top column.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from lime.lime_tabular import LimeTabularExplainer
from scipy.stats import spearmanr

from flowline.contract import numbers_from_text
from flowline.features.feature_set import FeatureSet
from flowline.models.ensemble import Ensemble
from flowline.use_case import UseCase

GLOBAL_ROWS = 500  # test rows the global importance and dependence plots average over
LOCAL_INSTANCES = 5
LIME_SAMPLES = 2000
TOP_COLUMNS = 5  # per instance: the columns the agreement is measured on, from each method
DEPENDENCE_COLUMNS = 3


@dataclass(frozen=True)
class ColumnCodec:
    """Raw columns <-> the numeric matrix LIME perturbs: categories as codes, numbers as they are.

    A row is encoded as the model scores it, so that LIME explains the scored row: a missing number
    gets the FeatureSet's fill (the use case's `impute`), and a missing category decodes as missing
    again; categories the reference lacks but `explained` holds (unseen in training) get codes of their
    own that decode to themselves. LIME never sees NaN, and draws its perturbations from the
    reference's categories.
    """

    columns: tuple[str, ...]
    categories: dict[str, list[str]]
    fills: dict[str, float]
    integers: frozenset[str]

    @classmethod
    def fit(cls, reference: pd.DataFrame, columns: list[str], use_case: UseCase, fills: dict[str, float],
            explained: pd.DataFrame | None = None) -> ColumnCodec:
        """`fills`: each numeric column's fill for a missing value (FeatureSet.numeric's); `explained`: the rows
        that will be encoded, whose categories the reference may lack."""
        categories, integers = {}, set()
        for column in columns:
            spec = use_case.columns[column]
            if spec.is_numeric:
                if spec.type == "integer":
                    integers.add(column)
            else:
                known = sorted(_text(reference[column]).unique())
                unseen = set() if explained is None else set(_text(explained[column])) - set(known)
                categories[column] = known + sorted(unseen)
        return cls(tuple(columns), categories, {c: fills[c] for c in columns if c not in categories},
                   frozenset(integers))

    @property
    def categorical_positions(self) -> list[int]:
        return [i for i, column in enumerate(self.columns) if column in self.categories]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)))
        for i, column in enumerate(self.columns):
            if column in self.categories:
                known = {value: code for code, value in enumerate(self.categories[column])}
                values = _text(frame[column])
                if not set(values) <= known.keys():
                    raise ValueError(f"{column}: {sorted(set(values) - known.keys())} not among the codec's "
                                     "categories; fit it with the rows it encodes (`explained`)")
                out[:, i] = [known[v] for v in values]
            else:
                out[:, i] = numbers_from_text(frame[column]).fillna(self.fills[column]).to_numpy()
        return out

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        data = {}
        for i, column in enumerate(self.columns):
            if column in self.categories:
                codes = np.clip(np.rint(matrix[:, i]).astype(int), 0, len(self.categories[column]) - 1)
                decoded = np.array(self.categories[column], dtype=object)[codes]
                data[column] = np.where(decoded == MISSING, None, decoded)
            elif column in self.integers:  # a whole number, but the fill as it is: a blank was scored with it
                values = matrix[:, i]
                data[column] = np.where(values == self.fills[column], values, np.rint(values))
            else:
                data[column] = matrix[:, i]
        return pd.DataFrame(data)


MISSING = "(missing)"  # a missing category's code: decoded as missing, as it was scored


def _text(values: pd.Series) -> pd.Series:
    return values.astype(object).where(values.notna(), MISSING).astype(str)


def rank_agreement(shap_values: np.ndarray, lime_weights: np.ndarray, top: int = TOP_COLUMNS) -> dict:
    """Spearman correlation of |SHAP| and |LIME| over the union of both methods' top columns."""
    shap_size, lime_size = np.abs(shap_values), np.abs(lime_weights)
    union = sorted(set(np.argsort(-shap_size)[:top]) | set(np.argsort(-lime_size)[:top]))
    correlation = spearmanr(shap_size[union], lime_size[union]).statistic if len(union) > 1 else 1.0
    return {"spearman": float(np.nan_to_num(correlation)),
            "top_column_agrees": bool(np.argmax(shap_size) == np.argmax(lime_size))}


def _top(values: np.ndarray, columns: list[str], top: int) -> dict[str, float]:
    order = np.argsort(-np.abs(values))[:top]
    return {columns[i]: float(values[i]) for i in order}


def explain(use_case: UseCase, feature_set: FeatureSet, model: Ensemble, reference: pd.DataFrame,
            rows: pd.DataFrame, seed: int) -> dict:
    """Global SHAP importance and dependence data over `rows` (a seeded sample), and SHAP and LIME
    for LOCAL_INSTANCES of them; LIME's perturbations are drawn around `reference` (train)."""
    rng = np.random.default_rng(seed)
    sample = rows.iloc[np.sort(rng.choice(len(rows), size=min(GLOBAL_ROWS, len(rows)), replace=False))]
    columns = list(feature_set.input_columns)
    x = feature_set.transform(sample)
    values, base, floor_adjustment = model.column_contributions(x, feature_set.owners)
    margin = model.margin(x)
    importance = np.abs(values).mean(axis=0)
    order = np.argsort(-importance)
    binary = use_case.task == "binary"
    picked = np.sort(rng.choice(len(sample), size=min(LOCAL_INSTANCES, len(sample)), replace=False))
    codec = ColumnCodec.fit(reference, columns, use_case, {i.column: i.fill for i in feature_set.numeric},
                            sample.iloc[picked])


    def predict(matrix: np.ndarray) -> np.ndarray:
        scores = model.predict(feature_set.transform(codec.decode(matrix)))
        return np.column_stack([1 - scores, scores]) if binary else scores

    lime = LimeTabularExplainer(
        codec.encode(reference), mode="classification" if binary else "regression", feature_names=columns,
        categorical_features=codec.categorical_positions,
        categorical_names={i: codec.categories[c] for i, c in enumerate(columns) if c in codec.categories},
        discretize_continuous=True, random_state=seed)
    encoded = codec.encode(sample.iloc[picked])
    local = []
    for instance, position in zip(encoded, picked):
        found = lime.explain_instance(instance, predict, num_features=len(columns), num_samples=LIME_SAMPLES,
                                      labels=(1,) if binary else (0,))
        weights = np.zeros(len(columns))
        for column, weight in found.as_map()[1]:  # regression too: LIME keeps the signed weights under 1
            weights[column] = weight
        local.append({
            "row": int(sample.index[position]) if isinstance(sample.index[position], (int, np.integer))
            else str(sample.index[position]),
            "score": float(model.predict(x[position:position + 1])[0]), "base_value": float(base[position]),
            # the model's score of the instance LIME perturbed around: the score, as it explains the scored row
            "lime_instance_score": float(found.predict_proba[1] if binary else found.predicted_value),
            **({"floor_adjustment": float(floor_adjustment[position])} if model.floor is not None else {}),
            "shap": _top(values[position], columns, len(columns)), "lime": _top(weights, columns, len(columns)),
            "values": {c: _shown(sample.iloc[position][c]) for c in columns},
            **rank_agreement(values[position], weights),
        })
    return {
        "rows_explained": len(sample), "units": "log-odds" if binary else "prediction",
        "additivity_max_error": float(np.max(np.abs(values.sum(axis=1) + base + floor_adjustment - margin))),
        "global_importance": {columns[i]: float(importance[i]) for i in order},
        "dependence": {columns[i]: {"values": [_shown(v) for v in sample[columns[i]]],
                                    "shap": values[:, i].tolist()} for i in order[:DEPENDENCE_COLUMNS]},
        "local": local,
        "agreement": {"mean_spearman": float(np.mean([e["spearman"] for e in local])),
                      "top_column_agreement": float(np.mean([e["top_column_agrees"] for e in local])),
                      "top_columns": TOP_COLUMNS},
    }


def _shown(value: object) -> object:
    """A raw value as JSON can hold it."""
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value if isinstance(value, (int, float, str, type(None))) else str(value)


def explain_files(use_case: UseCase, model_dir: str, feature_set_file: str, train_file: str, test_file: str,
                  explanation_file: str) -> dict:
    """Explain the model on the test rows (perturbing around train); write explanation.json."""
    explanation = explain(use_case, FeatureSet.load(feature_set_file), Ensemble.load(model_dir),
                          pd.read_parquet(train_file), pd.read_parquet(test_file), use_case.tuning.seed)
    Path(explanation_file).write_text(json.dumps(explanation, indent=1))
    top = ", ".join(list(explanation["global_importance"])[:5])
    agreement = explanation["agreement"]
    print(f"explain: top columns by mean |SHAP| over {explanation['rows_explained']} test rows: {top}")
    print(f"explain: LIME against SHAP on {len(explanation['local'])} instances: mean Spearman "
          f"{agreement['mean_spearman']:.2f}, same top column in {agreement['top_column_agreement']:.0%}")
    return explanation
