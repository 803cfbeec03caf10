"""KFP component: SHAP importance, dependence and local explanations, with LIME for the same instances."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output


def explain(
    use_case_json: str,
    model: Input[Model],
    feature_set: Input[Artifact],
    train: Input[Dataset],
    test: Input[Dataset],
    explanation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Explain the model on a seeded sample of test rows (explanation.py); `report` shows the plots in the
    dashboard, and `explanation` feeds the model card."""
    from flowline.components.explain.explanation import explain_files
    from flowline.components.explain.report import explanation_html
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    result = explain_files(use_case, model.path, feature_set.path, train.path, test.path, explanation.path)
    metrics.log_metric("lime_shap_mean_spearman", result["agreement"]["mean_spearman"])
    metrics.log_metric("lime_shap_top_column_agreement", result["agreement"]["top_column_agreement"])
    with open(report.path, "w") as out:
        out.write(explanation_html(result, use_case))
