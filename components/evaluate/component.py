"""KFP components: score the model on the untouched test split, decide the quality gates and champion/challenger.

Two components, one per task, because a component's outputs are fixed: `evaluate` (binary) also writes the
ROC curve and confusion matrix as ClassificationMetrics, and `evaluate_regression` has no such output, which the
dashboard would show as an empty panel. The template uses the one for the use case's task; the dashboard names
both steps "evaluate".
"""

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
    matrix on test; `report` shows them in the dashboard.

    `champion` is the package of the model serving now ("" for none): promote or keep is
    decided with a significance test on the same test rows. The gate and the decision are
    made here (kfp.local has no dsl.If) and travel in `evaluation`.
    """
    from flowline.components.evaluate.evaluation import evaluate_step

    result = evaluate_step(use_case_json, champion, model.path, feature_set.path, holdout.path, test.path,
                           evaluation, metrics, report.path)
    roc = result["roc"]
    classification_metrics.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    classification_metrics.log_confusion_matrix(result["classes"], result["confusion_matrix"])


def evaluate_regression(
    use_case_json: str,
    champion: str,
    model: Input[Model],
    feature_set: Input[Artifact],
    holdout: Input[Dataset],
    test: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
):
    """Metrics on test and the value by decile of prediction; `report` shows them in the dashboard.

    `champion` is the package of the model serving now ("" for none): promote or keep is
    decided with a paired bootstrap on the same test rows. The gate and the decision are
    made here (kfp.local has no dsl.If) and travel in `evaluation`.
    """
    from flowline.components.evaluate.evaluation import evaluate_step

    evaluate_step(use_case_json, champion, model.path, feature_set.path, holdout.path, test.path, evaluation,
                  metrics, report.path)
