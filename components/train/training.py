"""Training the candidates with their tuned parameters, and choosing the served model on valid.

Each family's best parameters come from its tune (or nas) step. Fits are seeded and
deterministic, so fitting a parameter set again gives the model its search scored.
The served model is the best candidate, or a blend of the best when it beats it
(ensemble.py), chosen with every candidate trained on train and scored on valid.

Then, with `ensemble.refit` (the default), the chosen members are trained once more
on train + valid with the rounds or epochs they were early-stopped at (boosting
rounds scaled with the rows), keeping the blend's weights: the model learns from 25 %
more rows, and nothing it learned from was used to score it. The held-out validation
predictions of the train-only model are written beside it, for evaluate to choose
the decision threshold on rows the model did not see.

Everything lands in one folder: model.json, one native file per member, and
training.json with every candidate's parameters and scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pandas as pd
import xgboost as xgb

from flowline.components.features.feature_set import FeatureSet
from flowline.components.train.ensemble import Ensemble, Member, select_model
from flowline.components.train.models import TrainingData, fit_candidate, refit_candidate
from flowline.components.tune.search import SearchResult
from flowline.pipelines.use_case import UseCase

TRAINING_FILE = "training.json"
ITERATION_UNITS = {"xgboost": "rounds", "mlp": "epochs"}


def train_files(
    use_case: UseCase, train_file: str, valid_file: str, feature_set_file: str, search_files: Mapping[str, str],
    model_dir: str, holdout_file: str,
) -> dict:
    """Fit every searched family, select on valid, refit, and write the model folder and the
    held-out validation predictions; return training.json's content.

    `search_files` maps each family to its search result; only the use case's families are read.
    """
    feature_set = FeatureSet.load(feature_set_file)
    train, valid = pd.read_parquet(train_file), pd.read_parquet(valid_file)
    data = TrainingData.from_splits(feature_set, train, valid, use_case.task)
    results = {family: SearchResult.load(search_files[family]) for family in use_case.tuning.families}
    candidates, described = {}, []
    for family, result in results.items():
        fitted = fit_candidate(family, result.params, data, use_case.tuning)
        candidates[family] = fitted
        described.append({"family": family, "params": result.params, "valid_score": fitted.valid_score,
                          "iterations": fitted.iterations, "trials": result.trials, "backend": result.backend})
        print(f"train: {family} valid {result.metric} {fitted.valid_score:.4f} ({fitted.iterations} "
              f"{ITERATION_UNITS.get(family, 'fit')})")
    ensemble, selection = select_model(use_case.task, candidates, data.x_valid, data.y_valid, use_case.ensemble,
                                       use_case.tuning.seed)
    pd.DataFrame({"label": data.y_valid, "prediction": ensemble.predict(data.x_valid)}).to_parquet(holdout_file)
    print(f"train: selected {selection['selected']}: {selection['reason']}")
    if use_case.ensemble.refit:
        rows = pd.concat([train, valid])
        ensemble = _refit(ensemble, {f: (r.params, candidates[f].iterations) for f, r in results.items()},
                          use_case, feature_set, rows, len(train))
        selection["refit_rows"] = len(rows)
    ensemble.save(model_dir)
    summary = {
        "candidates": described,
        "selection": selection,
        "feature_set_version": feature_set.version,
        "xgboost_version": xgb.__version__,
    }
    (Path(model_dir) / TRAINING_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def _refit(ensemble: Ensemble, found: dict[str, tuple[dict, int]], use_case: UseCase, feature_set: FeatureSet,
           rows: pd.DataFrame, train_rows: int) -> Ensemble:
    """The same members and weights, each trained again on `rows` (train + valid).

    `found` holds each family's parameters and the rounds or epochs it trained for.
    """
    x, y = feature_set.transform_training(rows), feature_set.labels(rows)
    members = []
    for member in ensemble.members:
        params, iterations = found[member.family]
        if member.family == "xgboost":  # as many rounds per row as early stopping found on train
            iterations = max(1, round(iterations * len(rows) / train_rows))
        model = refit_candidate(member.family, params, iterations, x, y, use_case.task, use_case.tuning)
        members.append(Member(member.family, model, member.weight))
    print(f"train: refitted {', '.join(m.family for m in members)} on {len(rows)} rows (train + valid)")
    return Ensemble(ensemble.task, members, ensemble.bias)
