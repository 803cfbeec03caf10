"""Training the tuned candidates, choosing the served model on held-out predictions, refitting it.

Each family's best parameters, and the rounds or epochs it was early-stopped at, come
from its tune (or nas) step, which tuned it on train and scored it on valid. Then,
over train + valid together:

1. every candidate is trained `ensemble.folds` times (5), each time on 4/5 of the rows,
   and predicts the fifth it did not see: out-of-fold margins for all 5,634 churn rows
   rather than valid's 1,127, so that ranking the candidates and fitting the blend's
   weights are not decided by the noise of a small split;
2. the served model is the best candidate, or a blend of the best when it beats it
   (ensemble.py), both scored by cross-fitting on those out-of-fold margins;
3. its members are trained once more on all of train + valid (boosting rounds scaled
   with the rows), keeping the blend's weights; or, on small data (at most
   `ensemble.bag_max_rows` rows, 2,000 by default), each member is served as its 5 fold
   models of step 1, averaged (bagging, as AutoGluon does): on 10 seeded splits of German
   credit and IBM HR (seeds 0-4; 800 and 1,176 rows) the average beat the refit on 9, by
   +0.0049 ROC-AUC on the mean (docs/benchmarks.md), at 5 predictions per member instead of 1.

A refitted boosted family (XGBoost, LightGBM, CatBoost) is the average of its search's
`ensemble.average_trials` best trials (5), not its best alone: in step 1 each trial is
cross-fitted and the family's margin is their mean, and in step 3 each is refitted and
they share the family's weight. One validation split's best trial is partly its noise;
its runners-up average it away. Chosen on seeds 0-4 and checked on 5-9 of online_shoppers
and spambase (docs/benchmarks.md), at K predictions per boosted member. A bagged family
keeps its best trial: it is already an average of fold models, and on German credit and
IBM HR (seeds 0-4) its 5 best trials' 25 fold models scored no better (-0.0014 ROC-AUC on
the mean, up on 5 of the 10 splits).

On many rows steps 1 and 2, which choose, run on a sample, as the search does: at most
`tuning.search_rows` x folds / (folds - 1) rows of train + valid (25,000 by default;
flowline/splitting.py, `sample_positions`: seeded, stratified by the label), so that each
fold's model fits on as many rows as the search fit on and the folds' cost stops growing
with the data. Step 3 refits on all rows. The boosting rounds and epochs are the search's,
as at any size (the final refit's rounds scaled by the same 1.25 as always, not by the
whole data's ratio to the sample: a refit whose rounds grew with the rows would cost the
square of the rows); the MLP is capped in steps (`tuning.mlp_max_steps`, models/mlp.py).

The out-of-fold predictions of the chosen blend are the `holdout` output: evaluate
chooses the decision threshold on rows no model saw in training. Test rows are never
touched here. Everything lands in one folder: model.json, one native file per member,
and training.json with every candidate's parameters and scores.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Mapping, Optional

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb

from flowline.features.feature_set import FeatureSet
from flowline.features.kinds import FeatureLayout
from flowline.models.candidate import CandidateModel
from flowline.models.ensemble import Ensemble, Member, choose_blend
from flowline.models.families import BOOSTED_FAMILIES, refit_candidate
from flowline.package.format import TRAINING_FILE
from flowline.search import SearchResult, Trial
from flowline.splitting import cross_fitting_rows, fold_splits, sample_positions
from flowline.use_case import UseCase


def averaged_trials(family: str, result: SearchResult, use_case: UseCase, bagged: bool) -> list[Trial]:
    """The trials `family` is served as the average of: a refitted boosted family's `ensemble.average_trials`
    best; the best alone for a bagged family (already an average of its fold models) and any other family."""
    averaged = family in BOOSTED_FAMILIES and not bagged
    return result.best_trials(use_case.ensemble.average_trials if averaged else 1)


def out_of_fold_margins(
    trials: Mapping[str, list[Trial]], x: np.ndarray, y: np.ndarray, use_case: UseCase,
    layout: Optional[FeatureLayout] = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[list[CandidateModel]]]]:
    """Each family's margins for every row, from models trained on the other folds, and those fold models
    (per fold, one per trial in `trials[family]`).

    The folds hold 4/5 of train + valid, as many rows as train: each model trains for the
    rounds or epochs its search early-stopped at. A family averaged over several trials
    has, for each row, the mean of its trials' margins.
    """
    folds = use_case.ensemble.folds
    margins = {family: np.empty(len(y)) for family in trials}
    models: dict[str, list[list[CandidateModel]]] = {family: [] for family in trials}
    for fold, (fit_rows, held_out) in enumerate(fold_splits(use_case.task, y, folds, use_case.tuning.seed), 1):
        for family in trials:
            fitted = [refit_candidate(family, trial.params, trial.iterations, x[fit_rows], y[fit_rows],
                                      use_case.task, use_case.tuning, layout) for trial in trials[family]]
            margins[family][held_out] = np.mean([model.margin(x[held_out]) for model in fitted], axis=0)
            models[family].append(fitted)
        names = ", ".join(f if len(trials[f]) == 1 else f"{f} ({len(trials[f])} trials)" for f in trials)
        print(f"train: fold {fold}/{folds}: {names} trained on {len(fit_rows)} rows")
    return margins, models


def refit_member(family: str, trial: Trial, x: np.ndarray, y: np.ndarray, train_rows: int,
                 use_case: UseCase, feature_set: FeatureSet) -> CandidateModel:
    """`family` trained on all of (x, y), train + valid, with one trial's parameters: boosted families for as
    many rounds per row as early stopping found on train."""
    iterations = trial.iterations
    if family in BOOSTED_FAMILIES:
        iterations = max(1, round(iterations * len(y) / train_rows))
    return refit_candidate(family, trial.params, iterations, x, y, use_case.task, use_case.tuning, feature_set.layout)


def served_members(family: str, weight: float, grid: list[list[CandidateModel]], bagged: bool) -> list[Member]:
    """`family`'s models as blend members sharing its `weight` equally. `grid` holds one row per fold when
    `bagged` (its fold models), else one row (its refits); each row one model per averaged trial. Members are
    numbered by fold when bagged and by trial when there are several trials."""
    trials, folds = len(grid[0]), len(grid)
    return [Member(family, model, weight / (trials * folds), fold if bagged else None,
                   trial if trials > 1 else None)
            for fold, row in enumerate(grid, 1) for trial, model in enumerate(row, 1)]


def train_files(
    use_case: UseCase, train_file: str, valid_file: str, feature_set_file: str, search_files: Mapping[str, str],
    model_dir: str, holdout_file: str,
) -> dict:
    """Choose on out-of-fold predictions, refit, write the model folder and the held-out predictions.

    `search_files` maps each family to its search result; only the use case's families
    are read. Returns training.json's content.
    """
    feature_set = FeatureSet.load(feature_set_file)
    train, valid = pd.read_parquet(train_file), pd.read_parquet(valid_file)
    rows = pd.concat([train, valid])
    x, y = feature_set.transform_training(rows), feature_set.labels(rows)
    results = {family: SearchResult.load(search_files[family]) for family in use_case.tuning.families
               if not SearchResult.skipped(search_files[family])}  # (a time budget that gave it no trial)
    chosen = sample_positions(rows, cross_fitting_rows(use_case, len(rows)), use_case)
    bagged = len(chosen) == len(rows) <= use_case.ensemble.bag_max_rows
    trials = {family: averaged_trials(family, result, use_case, bagged) for family, result in results.items()}
    margins, fold_models = out_of_fold_margins(trials, x[chosen], y[chosen], use_case, feature_set.layout)
    # Tweedie members predict non-negative amounts; the blend must not go below zero either.
    members, bias, selection = choose_blend(use_case.task, use_case.tuning.metric, margins, y[chosen],
                                            use_case.ensemble, use_case.tuning.seed,
                                            non_negative=use_case.tuning.objective == "tweedie")
    print(f"train: selected {selection['selected']}: {selection['reason']}")

    blended = bias + sum(weight * margins[family] for family, weight in members)
    held_out = 1.0 / (1.0 + np.exp(-blended)) if use_case.task == "binary" else blended
    # The sensitive attributes travel with the scores: the bias step fits any mitigation on these rows.
    # The id goes too, so that erasing a data subject finds their row here as well.
    holdout = rows.iloc[chosen][[*use_case.id_columns, *use_case.sensitive_attributes]].reset_index(drop=True)
    holdout.insert(0, "prediction", held_out)
    holdout.insert(0, "label", y[chosen])
    holdout.to_parquet(holdout_file)

    averaged = ", ".join(f"{family} as its {len(trials[family])} best trials" for family, _ in members
                         if len(trials[family]) > 1)
    served = []
    for family, weight in members:
        grid = fold_models[family] if bagged else [
            [refit_member(family, trial, x, y, len(train), use_case, feature_set) for trial in trials[family]]]
        served += served_members(family, weight, grid, bagged)
    if bagged:
        fit = f"each of {', '.join(f for f, _ in members)} served as its {use_case.ensemble.folds} fold models, averaged"
    else:
        fit = f"refitted {', '.join(f for f, _ in members)} on {len(rows)} rows (train + valid)"
    fit += f"; {averaged}, averaged" if averaged else ""
    # Spend from a transaction log is never negative (customer rows floor the label at 0): nor is its prediction.
    floor = 0.0 if use_case.transaction_log is not None else None
    ensemble = Ensemble(use_case.task, served, bias, floor)
    ensemble.save(model_dir)
    print(f"train: {fit}")
    scores = {entry["family"]: entry["held_out_score"] for entry in selection["ranked"]}
    summary = {
        "candidates": [{"family": family, "params": result.params, "iterations": result.iterations,
                        "valid_score": result.valid_score, "held_out_score": scores[family],
                        "trials": result.trials, "averaged_trials": len(trials[family]),
                        "backend": result.backend} for family, result in results.items()],
        "selection": {**selection, "model": ensemble.describe(), "rows": len(rows), "cross_fitted_rows": len(chosen),
                      "bagged": bagged, "fit": fit},
        "feature_set_version": feature_set.version,
        "xgboost_version": xgb.__version__,
        "lightgbm_version": lgb.__version__,
        "catboost_version": version("catboost"),  # read without importing it (flowline/models/catboost.py)
    }
    (Path(model_dir) / TRAINING_FILE).write_text(json.dumps(summary, indent=1))
    return summary
