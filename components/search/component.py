"""KFP component: search every model family within the use case's time budget (Optuna here, Katib in a cluster)."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output


def search(
    use_case_json: str,
    trials: int,
    backend: str,
    namespace: str,
    source: str,
    image: str,
    train: Input[Dataset],
    valid: Input[Dataset],
    feature_set: Input[Artifact],
    xgboost: Output[Artifact],
    linear: Output[Artifact],
    forest: Output[Artifact],
    mlp: Output[Artifact],
    lightgbm: Output[Artifact],
    catboost: Output[Artifact],
    budget: Output[Artifact],
    budget_report: Output[Markdown],
    tuning_metrics: Output[Metrics],
):
    """`tuning.time_budget` seconds spent across the families, cost-aware (flowline/budget.py); one best per
    family, as the tune and nas steps write it, less what the features step's search spent of it (its FeatureSet's
    `search_seconds`). `trials` > 0 searches each family with that many trials instead."""
    import json

    from flowline.budget import budget_markdown
    from flowline.models.families import objective_metric, reported_value
    from flowline.search import SearchResult
    from flowline.tuning import record_search, search_files
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    outputs = {"xgboost": xgboost, "linear": linear, "forest": forest, "mlp": mlp, "lightgbm": lightgbm,
               "catboost": catboost}
    record = search_files(use_case, trials, backend, train.path, valid.path, feature_set.path,
                          {family: output.path for family, output in outputs.items()}, namespace, source, image,
                          features_seconds=float(feature_set.metadata.get("search_seconds", 0.0)))
    with open(budget.path, "w") as out:
        json.dump(record or {"trials": trials}, out, indent=1)
    with open(budget_report.path, "w") as out:
        out.write(budget_markdown(record, lambda score: reported_value(use_case.task, score),
                                  objective_metric(use_case.task, use_case.tuning.metric)[0]) if record else
                  "# Search\n\nNo time budget spent: each family ran its trials (the `trials` input, or with Katib "
                  "the maxTrialCount flowline/katib.py derives from the budget).\n")
    # As the tune and nas steps show theirs, whichever backend searched and whatever the budget: each family's
    # best on its artifact, its score, trials and rows as `<family>_...` metrics, and its seconds under a time budget.
    for family, output in outputs.items():
        searched = None if SearchResult.skipped(output.path) else SearchResult.load(output.path)
        record_search(searched, use_case.task, output, tuning_metrics, prefix=f"{family}_")
    for family, spend in (record or {"families": {}})["families"].items():
        tuning_metrics.log_metric(f"{family}_seconds", spend["seconds"])
