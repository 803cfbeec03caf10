"""KFP component: search one model family's space (Optuna here, Katib in a cluster)."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


def tune(
    use_case_json: str,
    family: str,
    trials: int,
    backend: str,
    namespace: str,
    source: str,
    image: str,
    train: Input[Dataset],
    valid: Input[Dataset],
    feature_set: Input[Artifact],
    best: Output[Artifact],
    tuning_metrics: Output[Metrics],
):
    """TPE with median stopping over `family`'s space; `trials` > 0 overrides the budget, `backend` "" is the use case's.
    Katib trials run in `image`, the pipeline's."""
    from flowline.tuning import record_search, tune_files
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    result = tune_files(use_case, family, trials, backend, train.path, valid.path,
                        feature_set.path, best.path, namespace, source, image)
    record_search(result, use_case.task, best, tuning_metrics)
