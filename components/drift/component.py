"""KFP component: fit and calibrate the drift detector on the training reference."""

from kfp.dsl import Artifact, Dataset, Input, Output


def drift(
    use_case_json: str,
    train: Input[Dataset],
    valid: Input[Dataset],
    feature_set: Input[Artifact],
    detector: Output[Artifact],
):
    """TabularDrift (KS numeric, chi-squared categorical and few-valued numeric) on raw features; window and threshold
    calibrated on valid."""
    from flowline.drift import fit_drift_files
    from flowline.use_case import UseCase

    calibration = fit_drift_files(
        UseCase.model_validate_json(use_case_json), train.path, valid.path, feature_set.path, detector.path
    )
    weakest = calibration.weakest_feature
    detector.metadata.update(
        window_size=calibration.window_size, threshold=calibration.threshold,
        false_alarm_rate=calibration.false_alarm_rate, power=calibration.power,
        weakest_feature=weakest, weakest_feature_power=calibration.power_by_feature[weakest],
    )
