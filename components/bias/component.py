"""KFP component: fairness of the decisions per sensitive attribute, its gate, and any mitigation."""

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def bias(
    use_case_json: str,
    model: Input[Model],
    feature_set: Input[Artifact],
    holdout: Input[Dataset],
    test: Input[Dataset],
    evaluation: Input[Artifact],
    decided: Output[Artifact],
    metrics: Output[Metrics],
    served_decisions: Output[ClassificationMetrics],
    report: Output[Markdown],
    html_report: Output[HTML],
):
    """Group metrics and gaps (fairness.py), gated on `holdout` (out-of-fold predictions of train + valid);
    when a gate fails and mitigation is on, per-group thresholds fitted there too, served only when they
    pass every gate at an acceptable cost. Test reports both. `decided` is `evaluation` with its fairness:
    a failed fairness gate fails the run and keeps the champion, so the deploy step never applies it.
    `metrics` holds the served decisions' gaps out of fold (`out_of_fold.<attribute>.<gap>`, where they are gated)
    and on test (`test.<attribute>.<gap>`), and the run's outcome after every gate (`gates_passed`, `promoted`):
    unprefixed, evaluate's metrics are test values, so no bias metric is;
    `served_decisions` the confusion matrix of the decisions served on test (evaluate's is the single
    threshold's, which per-group thresholds replace)."""
    from flowline.components.bias.fairness import bias_files, outcome_metrics
    from flowline.components.bias.report import fairness_html, fairness_markdown
    from flowline.fairness_summary import served_option
    from flowline.use_case import FAIRNESS_METRICS, UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    decided_evaluation = bias_files(use_case, model.path, feature_set.path, holdout.path, test.path,
                                    evaluation.path, decided.path)
    fairness = decided_evaluation["fairness"]
    # the decisions served, on test: per-group thresholds replace evaluate's when mitigated (none without attributes)
    served_test = served_option(fairness)["test"] if fairness["attributes"] else None
    for attribute, result in fairness["attributes"].items():
        for name in FAIRNESS_METRICS:
            metrics.log_metric(f"out_of_fold.{attribute}.{name}", result[name])
            metrics.log_metric(f"test.{attribute}.{name}", served_test["attributes"][attribute][name])
    metrics.log_metric("fairness_passed", float(fairness["passed"]))  # a failed fairness gate leaves the step green
    for name, value in outcome_metrics(decided_evaluation).items():  # the run's outcome: gates_passed, promoted
        metrics.log_metric(name, value)
    if served_test is not None:
        metrics.log_metric("mitigated", float(bool(fairness["mitigation"])))
        for name, value in served_test["outcomes"].items():
            metrics.log_metric(f"served.test.{name}", value)
        served_decisions.log_confusion_matrix(decided_evaluation["classes"], served_test["confusion_matrix"])
    decided.metadata.update(fairness_passed=fairness["passed"], mitigated=bool(fairness["mitigation"]),
                            gates_passed=decided_evaluation["gates_passed"],
                            decision=decided_evaluation["champion_challenger"]["decision"])
    with open(report.path, "w") as out:
        out.write(fairness_markdown(fairness, use_case))
    with open(html_report.path, "w") as out:
        out.write(fairness_html(fairness, use_case))
