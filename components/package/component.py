"""KFP component: assemble the verified model package."""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Model, Output


def package(
    use_case_json: str,
    dataset: Input[Dataset],
    train: Input[Dataset],
    valid: Input[Dataset],
    model: Input[Model],
    feature_set: Input[Artifact],
    evaluation: Input[Artifact],
    detector: Input[Artifact],
    explanation: Input[Artifact],
    profile: Input[Markdown],
    feature_search: Input[Markdown],
    evaluation_report: Input[Markdown],
    fairness_report: Input[HTML],
    model_package: Output[Model],
    model_card: Output[HTML],
    run_name: str = "",
    run_id: str = "",
    trials: int = 0,
    tuning_backend: str = "",
):
    """Model, FeatureSet, evaluation (with fairness, from the bias step), drift detector, lineage, model card,
    the steps' reports (reports/, by name and extension: REPORT_FILES; the evaluation report written again from
    the decided `evaluation`, as `evaluation_report` precedes the fairness gates) and a sha256 manifest,
    verified before it is handed on; `model_card` shows the card in the dashboard. The lineage names the code
    (its git commit where known), the run (`run_name`, `run_id`: the pipeline's placeholders) and the run's
    overrides of the use case (`trials`, `tuning_backend`). The package keeps the fingerprints of the `train` and
    `valid` rows, so that a later run's champion comparison leaves the rows this model was fitted on out."""
    import json

    from flowline.package.format import CARD_JSON
    from flowline.components.package.building import package_files, run_identity
    from flowline.components.package.model_card import model_card_html
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    reports = {"profile": profile.path, "feature_search": feature_search.path, "evaluation": evaluation_report.path,
               "fairness": fairness_report.path}
    model_package.metadata.update(
        package_files(use_case, model_package.path, model.path, feature_set.path, evaluation.path, dataset.metadata,
                      detector.path, explanation.path, reports, run_identity(run_name, run_id, trials, tuning_backend),
                      (train.path, valid.path))
    )
    card = json.loads(open(f"{model_package.path}/{CARD_JSON}").read())
    version = model_package.metadata["version"]
    model_card.metadata["package_version"] = version
    with open(model_card.path, "w") as out:  # shown alone in the dashboard: its package named, the reports not linked
        out.write(model_card_html(card, package_version=version))
