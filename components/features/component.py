"""KFP component: fit the FeatureSet on the training split."""

from kfp.dsl import Artifact, Dataset, Input, Output

from flowline.components import flowline_component


@flowline_component
def features(use_case_json: str, train: Input[Dataset], feature_set: Output[Artifact]):
    """Fit imputation and encoding on train only; the same object serves requests later."""
    from flowline.components.features.feature_set import fit_feature_set_file
    from flowline.pipelines.use_case import UseCase

    fitted = fit_feature_set_file(UseCase.model_validate_json(use_case_json), train.path, feature_set.path)
    feature_set.metadata.update(version=fitted.version, width=fitted.width, columns=len(fitted.input_columns))
