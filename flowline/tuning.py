"""The tune and nas steps (one family's space) and the search step (every family within a time budget), with
Optuna here or Katib in a cluster."""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from flowline import DEFAULT_IMAGE
from flowline.cluster import IN_CLUSTER_ENV
from flowline.features.feature_set import FeatureSet
from flowline.models.families import TRIAL_FOLDS, TrainingData, cross_validated, reported_value
from flowline.search import SearchResult, optuna_search
from flowline.splitting import search_sample
from flowline.use_case import UseCase

BACKENDS = ("auto", "optuna", "katib")


def resolve_backend(backend: str) -> str:
    """`auto` is Katib inside a cluster (a pod sees KUBERNETES_SERVICE_HOST) and Optuna elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"tuning backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "katib" if os.environ.get(IN_CLUSTER_ENV) else "optuna"
    return backend


def search_data(use_case: UseCase, feature_set: FeatureSet, train: pd.DataFrame, valid: pd.DataFrame) -> TrainingData:
    """The encoded search sample of train and valid (flowline/splitting.py, `search_sample`): what every trial fits
    and scores on, Optuna's here and Katib's in its pod (katib_experiments/trial.py)."""
    train, valid = search_sample(train, valid, use_case)
    return TrainingData.from_splits(feature_set, train, valid, use_case.task)


def tune_files(
    use_case: UseCase,
    family: str,
    trials: int,
    backend: str,
    train_file: str,
    valid_file: str,
    feature_set_file: str,
    result_file: str,
    namespace: str = "flowline",
    source: str = "",
    image: str = DEFAULT_IMAGE,
) -> Optional[SearchResult]:
    """Search `family` with `trials` trials (0: the use case's budget; with Katib katib_trials) and save the best
    as JSON.

    `backend` "" takes the use case's `tuning.backend`. Katib trials run in `image` (the pipeline's, a
    task input) and refit the same FeatureSet from its plan, on data read from `source` (see katib_experiments). A
    family the use case leaves out of `tuning.families` is skipped: the pipeline has one
    step per family, and train reads only the families the use case lists.
    """
    prefix = f"{'nas' if family == 'mlp' else 'tune'} ({family})"
    if family not in use_case.tuning.families:
        _save_skipped(family, result_file)
        print(f"{prefix}: skipped, not in the use case's tuning.families")
        return None
    chosen = resolve_backend(backend or use_case.tuning.backend)
    feature_set = FeatureSet.load(feature_set_file)
    on_rows = ""
    if chosen == "katib":
        from flowline.katib import katib_trials
        from flowline.katib_search import katib_search

        result = katib_search(use_case, family, trials or katib_trials(use_case.tuning, family), image, namespace,
                              source, feature_set.plan.to_dict(), prefix=prefix)
    else:
        data = search_data(use_case, feature_set, pd.read_parquet(train_file), pd.read_parquet(valid_file))
        result = optuna_search(family, data, use_case.tuning, use_case.trials_for(family, trials), prefix=prefix)
        result = replace(result, rows=len(data.y_train))
        on_rows = (f", each {TRIAL_FOLDS}-fold cross-validated on {len(data.y_train) + len(data.y_valid):,} train + "
                   f"valid rows" if cross_validated(data, use_case.tuning) else f" on {result.rows:,} train rows")
    result.save(result_file)
    print(f"{prefix}: best {result.metric} {reported_value(use_case.task, result.valid_score):.4f} after "
          f"{result.trials} trials ({result.stopped_early} stopped early){on_rows} with {result.backend}: "
          f"{result.params}")
    return result


def search_files(
    use_case: UseCase,
    trials: int,
    backend: str,
    train_file: str,
    valid_file: str,
    feature_set_file: str,
    result_files: Mapping[str, str],
    namespace: str = "flowline",
    source: str = "",
    image: str = DEFAULT_IMAGE,
    features_seconds: float = 0.0,
) -> Optional[dict]:
    """The search step of a use case with a `tuning.time_budget`: every family in one step, each best saved to
    `result_files`[family] as tune_files saves it (a family the use case leaves out: skipped).

    With Optuna the budget is spent across the families (flowline/budget.py) and the spending record is returned;
    `trials` > 0 instead searches each family with that many trials, reproducibly, as tune_files does (and returns
    None). With Katib every family's Experiment runs at once, sized by katib_trials. `features_seconds` is what the
    features step's search spent of the budget: the search spends the rest, at least 1 - FEATURES_SHARE of it.
    """
    for family, path in result_files.items():
        if family not in use_case.tuning.families:
            _save_skipped(family, path)
    chosen = resolve_backend(backend or use_case.tuning.backend)
    if trials or chosen == "katib":
        # Katib's Experiments run side by side (each waits on the cluster); Optuna's one family after another.
        with ThreadPoolExecutor(max_workers=len(use_case.tuning.families) if chosen == "katib" else 1) as pool:
            list(pool.map(lambda family: tune_files(use_case, family, trials, chosen, train_file, valid_file,
                                                    feature_set_file, result_files[family], namespace, source, image),
                          use_case.tuning.families))
        return None
    from flowline.budget import FEATURES_SHARE, budgeted_search

    feature_set = FeatureSet.load(feature_set_file)
    data = search_data(use_case, feature_set, pd.read_parquet(train_file), pd.read_parquet(valid_file))
    budget = use_case.tuning.time_budget
    left = budget - min(features_seconds, FEATURES_SHARE * budget)
    results, record = budgeted_search(use_case.tuning.families, data, use_case.tuning, left)
    record.update(time_budget=budget, features_seconds=round(features_seconds, 3),
                  rows={"train": len(data.y_train), "valid": len(data.y_valid)})
    if not results:
        raise ValueError(f"tuning.time_budget (or --time-budget): {budget:g} s were spent before any family's first "
                         "trial; give more seconds, or fewer families")
    for family in use_case.tuning.families:
        if family not in results:  # train goes on with the families that were searched
            _save_skipped(family, result_files[family], f"no trial within tuning.time_budget {budget:g} s")
            print(f"tune ({family}): no trial within the time budget ({budget:g} s); left out of the model")
            continue
        replace(results[family], rows=len(data.y_train)).save(result_files[family])
        spend = record["families"][family]
        print(f"tune ({family}): best {results[family].metric} "
              f"{reported_value(use_case.task, results[family].valid_score):.4f} after {spend['trials']} trials in "
              f"{spend['seconds']:.1f} s; stopped: {spend['stopped']}")
    return record


def _save_skipped(family: str, result_file: str, reason: str = "not in tuning.families") -> None:
    """What a step saves for a family without a result: left out of tuning.families, or given no trial (train
    skips it)."""
    Path(result_file).write_text(json.dumps({"family": family, "skipped": reason}))


def record_search(result: Optional[SearchResult], task: str, best, tuning_metrics, prefix: str = "") -> None:
    """Show the search in the Kubeflow UI: the best artifact's metadata and the Metrics artifact (each metric's
    name after `prefix`: the search step records every family in one Metrics artifact)."""
    if result is None:
        best.metadata.update(skipped=True)
        return
    if not math.isfinite(result.valid_score):  # KFP cannot record it, and no blend can weigh it
        raise ValueError(f"{result.family}: no trial scored a finite {result.metric} on the valid rows "
                         f"(best {result.valid_score}); a fold or split with one class only scores none")
    best.metadata.update(family=result.family, backend=result.backend, params=result.params)
    tuning_metrics.log_metric(prefix + result.metric, reported_value(task, result.valid_score))
    tuning_metrics.log_metric(prefix + "trials", result.trials)
    tuning_metrics.log_metric(prefix + "stopped_early", result.stopped_early)
    if result.rows is not None:
        tuning_metrics.log_metric(prefix + "search_rows", result.rows)
