"""KFP component: batch scoring with a model package."""

from kfp.dsl import Dataset, Markdown, Metrics, Output


def score(
    use_case_json: str,
    package_uri: str,
    input_uri: str,
    as_of: str,
    audit_log: str,
    scores: Output[Dataset],
    quarantine: Output[Dataset],
    metrics: Output[Metrics],
    summary: Output[Markdown],
):
    """Score `input_uri` (CSV or Parquet: s3://, http(s) or a path) with the package at `package_uri`, in
    chunks (flowline/batch.py); a transaction-log use case scores every customer as of `as_of` (YYYY-MM-DD;
    "" for the run's own day, so a recurring run scores as of its day). Bad rows go to `quarantine` with their
    reasons; the counts and the values outside the training profile go to `metrics` and `summary`, and the run
    to `audit_log` when set (s3://bucket/prefix on a cluster). More bad rows than the use case's
    max_bad_fraction fail the step, as they fail ingest, once the outputs and counts are written (the quarantine
    put at its artifact URI first: KFP uploads the outputs of a step that succeeds only)."""
    from flowline.batch import enforce_bad_fraction
    from flowline.components.score.batch_run import score_files
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json(use_case_json)
    result = score_files(use_case, package_uri, input_uri, as_of, audit_log, scores.path, quarantine.path,
                         summary.path)
    for name, value in result.counts.items():
        metrics.log_metric(name, value)
    metrics.log_metric("values_out_of_profile", sum(result.out_of_profile.values()))
    scores.metadata.update({"package_version": result.package_version, **result.counts})
    enforce_bad_fraction(result, use_case, quarantine.uri)
