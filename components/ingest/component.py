"""KFP component: read the raw table and hold it to the use case's data contract."""

from kfp.dsl import Dataset, Markdown, Output


def ingest(
    use_case_json: str,
    source: str,
    dataset: Output[Dataset],
    quarantine: Output[Dataset],
    profile: Output[Markdown],
):
    """Rows meeting the contract go to `dataset`, the others to `quarantine` with reasons.

    `source` overrides the use case's data source when not empty.
    """
    from flowline.components.ingest.ingestion import ingest_to_files
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    counts = ingest_to_files(use_case, source, dataset.path, quarantine.path, profile.path, quarantine.uri)
    dataset.metadata.update(counts)
    quarantine.metadata.update(rows=counts["rows_quarantined"])
