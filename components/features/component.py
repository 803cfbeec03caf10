"""KFP component: choose the feature plan on valid and fit the FeatureSet on the training split."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output


def features(
    use_case_json: str,
    train: Input[Dataset],
    valid: Input[Dataset],
    feature_set: Output[Artifact],
    search_report: Output[Markdown],
    trials: int = 0,
):
    """Encodings, transforms and generated features chosen by validation score (on the search sample:
    `search_rows` in the metadata, 0 with the search off, and its `search_seconds`, which a time budget counts),
    fitted on all of train; the same object serves requests. With `trials` (the run's --trials) the search is not
    cut short by a time budget, so the plan is reproducible."""
    from flowline.components.features.fitting import engineer_features_files
    from flowline.use_case import UseCase

    fitted, log = engineer_features_files(UseCase.model_validate_json(use_case_json), train.path, valid.path,
                                          feature_set.path, search_report.path, timed=trials <= 0)
    feature_set.metadata.update(version=fitted.version, width=fitted.width, columns=len(fitted.input_columns),
                                search_rows=log.rows[0], search_seconds=round(log.seconds, 3))
