"""The tune and nas steps: search one family's space with Optuna here, or with Katib in a cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import pandas as pd

from flowline import DEFAULT_IMAGE
from flowline.cluster import IN_CLUSTER_ENV
from flowline.features.feature_set import FeatureSet
from flowline.models.families import TrainingData, reported_value
from flowline.search import SearchResult, optuna_search
from flowline.use_case import UseCase

BACKENDS = ("auto", "optuna", "katib")


def resolve_backend(backend: str) -> str:
    """`auto` is Katib inside a cluster (a pod sees KUBERNETES_SERVICE_HOST) and Optuna elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"tuning backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "katib" if os.environ.get(IN_CLUSTER_ENV) else "optuna"
    return backend


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
    """Search `family` with `trials` trials (0: the use case's budget) and save the best as JSON.

    `backend` "" takes the use case's `tuning.backend`. Katib trials run in `image` (the pipeline's, a
    task input) and refit the same FeatureSet from its plan, on data read from `source` (see katib_experiments). A
    family the use case leaves out of `tuning.families` is skipped: the pipeline has one
    step per family, and train reads only the families the use case lists.
    """
    prefix = f"{'nas' if family == 'mlp' else 'tune'} ({family})"
    if family not in use_case.tuning.families:
        Path(result_file).write_text(json.dumps({"family": family, "skipped": "not in tuning.families"}))
        print(f"{prefix}: skipped, not in the use case's tuning.families")
        return None
    trials = use_case.trials_for(family, trials)
    chosen = resolve_backend(backend or use_case.tuning.backend)
    feature_set = FeatureSet.load(feature_set_file)
    if chosen == "katib":
        from flowline.katib_search import katib_search

        result = katib_search(use_case, family, trials, image, namespace, source,
                              feature_set.plan.to_dict(), prefix=prefix)
    else:
        data = TrainingData.from_splits(feature_set, pd.read_parquet(train_file), pd.read_parquet(valid_file),
                                        use_case.task)
        result = optuna_search(family, data, use_case.tuning, trials, prefix=prefix)
    result.save(result_file)
    print(f"{prefix}: best {result.metric} {reported_value(use_case.task, result.valid_score):.4f} after "
          f"{result.trials} trials ({result.stopped_early} stopped early) with {result.backend}: {result.params}")
    return result


def record_search(result: Optional[SearchResult], task: str, best, tuning_metrics) -> None:
    """Show the search in the Kubeflow UI: the best artifact's metadata and the Metrics artifact."""
    if result is None:
        best.metadata.update(skipped=True)
        return
    best.metadata.update(family=result.family, backend=result.backend, params=result.params)
    tuning_metrics.log_metric(result.metric, reported_value(task, result.valid_score))
    tuning_metrics.log_metric("trials", result.trials)
    tuning_metrics.log_metric("stopped_early", result.stopped_early)
