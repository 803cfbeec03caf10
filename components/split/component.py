"""KFP component: split the ingested rows by the fixed evaluation protocol."""

from kfp.dsl import Dataset, Input, Output


def split(
    use_case_json: str,
    dataset: Input[Dataset],
    train: Output[Dataset],
    valid: Output[Dataset],
    test: Output[Dataset],
):
    """Seeded stratified (or time-ordered) train/valid/test; test is touched only by evaluate."""
    from flowline.components.split.parts import split_files
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    outputs = {"train": train, "valid": valid, "test": test}
    counts = split_files(use_case, dataset.path, {name: artifact.path for name, artifact in outputs.items()})
    for name, artifact in outputs.items():
        artifact.metadata["rows"] = counts[name]
