"""KFP component: one row per customer and cut-off from a transaction log."""

from kfp.dsl import Dataset, Input, Markdown, Output


def customer_rows(
    use_case_json: str,
    dataset: Input[Dataset],
    rows: Output[Dataset],
    summary: Output[Markdown],
):
    """Features known at each cut-off and the spend that followed (customer_rows.py); the rows at
    calibration_end are the ones the model is applied to."""
    from flowline.components.customers.rows import customer_rows_files
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    rows.metadata.update(customer_rows_files(use_case, dataset.path, rows.path, summary.path))
