"""KFP component: score the model on the untouched test split, decide the quality gates and champion/challenger."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def evaluate(
    use_case_json: str,
    champion: str,
    model: Input[Model],
    feature_set: Input[Artifact],
    holdout: Input[Dataset],
    test: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[Markdown],
):
    """Threshold from the use case's costs on train's out-of-fold predictions; metrics, ROC and confusion
    matrix on test; `report` shows them in the dashboard, with the value by decile for regression.

    `champion` is the package of the model serving now ("" for none): promote or keep is
    decided with a significance test on the same test rows. The gate and the decision are
    made here (kfp.local has no dsl.If) and travel in `evaluation`.
    """
    from flowline.components.evaluate.evaluation import evaluate_files, report_markdown
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    result = evaluate_files(use_case, model.path, feature_set.path, holdout.path, test.path, evaluation.path,
                            champion)
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    if use_case.task == "binary":
        metrics.log_metric("threshold", result["threshold"])
        roc = result["roc"]
        classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
        classification_metrics.log_confusion_matrix(result["classes"], result["confusion_matrix"])
    decision = result["champion_challenger"]
    if "p_value" in decision:
        metrics.log_metric("champion_p_value", decision["p_value"])
    # A failed gate leaves every step green: the runs list and Compare view show the outcome by these two.
    metrics.log_metric("gates_passed", float(result["gates_passed"]))
    metrics.log_metric("promoted", float(decision["decision"] == "promote"))
    evaluation.metadata.update(gates_passed=result["gates_passed"], decision=decision["decision"])
    with open(report.path, "w") as out:
        out.write(report_markdown(result, use_case))
