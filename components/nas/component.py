"""KFP component: neural architecture search for the MLP (Optuna here, Katib in a cluster)."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


def nas(
    use_case_json: str,
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
    """Depth, widths, activation, dropout and learning rate of the MLP, searched like any other space (Katib
    trials run in `image`, the pipeline's)."""
    from flowline.tuning import record_search, tune_files
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    result = tune_files(use_case, "mlp", trials, backend, train.path, valid.path,
                        feature_set.path, best.path, namespace, source, image)
    record_search(result, use_case.task, best, tuning_metrics)
