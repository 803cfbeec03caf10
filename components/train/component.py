"""KFP component: tune and train XGBoost on the train split, early-stopped on valid."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from flowline.components import flowline_component


@flowline_component
def train(
    use_case_json: str,
    trials: int,
    train: Input[Dataset],
    valid: Input[Dataset],
    feature_set: Input[Artifact],
    model: Output[Model],
    tuning_metrics: Output[Metrics],
):
    """Optuna TPE over the XGBoost space; `trials` > 0 overrides the use case's budget."""
    from flowline.components.train.training import train_files
    from flowline.pipelines.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    summary = train_files(use_case, train.path, valid.path, feature_set.path, model.path, trials)
    model.metadata.update(framework="xgboost", num_boost_round=summary["num_boost_round"])
    tuning_metrics.log_metric(f"valid_{summary['valid_metric']}", summary["valid_score"])
    tuning_metrics.log_metric("trials", summary["trials"])
