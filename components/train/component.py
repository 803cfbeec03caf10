"""KFP component: train the tuned candidates, choose the served model on valid, refit it."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def train(
    use_case_json: str,
    train: Input[Dataset],
    valid: Input[Dataset],
    feature_set: Input[Artifact],
    xgboost_search: Input[Artifact],
    linear_search: Input[Artifact],
    forest_search: Input[Artifact],
    mlp_search: Input[Artifact],
    lightgbm_search: Input[Artifact],
    catboost_search: Input[Artifact],
    model: Output[Model],
    holdout: Output[Dataset],
    selection_metrics: Output[Metrics],
):
    """Candidates across families, the best one or a blend of the best chosen on out-of-fold
    predictions over train + valid, refitted on both (or, on small data, served as the fold models).

    One search input per family (kfp.local has no optional inputs); only the families in
    the use case's tuning.families are read.
    """
    from flowline.components.train.training import train_files
    from flowline.models.families import objective_metric, reported_value
    from flowline.use_case import UseCase

    summary = train_files(UseCase.model_validate_json(use_case_json), train.path, valid.path, feature_set.path,
                          {"xgboost": xgboost_search.path, "linear": linear_search.path, "forest": forest_search.path,
                           "mlp": mlp_search.path, "lightgbm": lightgbm_search.path,
                           "catboost": catboost_search.path}, model.path, holdout.path)
    selection = summary["selection"]
    model.metadata.update(framework="flowline-ensemble", selected=selection["selected"], fit=selection["fit"],
                          scored_by=selection["scored_by"], **{
        f"weight_{member['family']}": member["weight"] for member in selection["model"]["members"]})
    # Named by the metric, in its units as the tune steps report it (valid_roc_auc_xgboost; an RMSE positive).
    use_case = UseCase.model_validate_json(use_case_json)
    metric = objective_metric(use_case.task, use_case.tuning.metric)[0].removeprefix("valid_")
    for candidate in summary["candidates"]:
        family = candidate["family"]
        for split in ("valid", "held_out"):
            selection_metrics.log_metric(f"{split}_{metric}_{family}",
                                         reported_value(use_case.task, candidate[f"{split}_score"]))
    selection_metrics.log_metric("cross_fitted_rows", selection["cross_fitted_rows"])
    selection_metrics.log_metric("bagged", int(selection["bagged"]))
    for blend in selection["blends"]:
        selection_metrics.log_metric(f"blend_top{len(blend['members'])}_cross_fitted_{metric}",
                                     reported_value(use_case.task, blend["cross_fitted_score"]))
