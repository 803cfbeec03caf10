"""KFP component: the pipeline's exit handler, which records how the run ended."""

from kfp import dsl


def run_outcome(use_case_name: str, audit_log: str, broker_url: str, run_id: str,
                status: dsl.PipelineTaskFinalStatus):
    """Runs after every other task, whether they succeeded or not: records the run's outcome in
    `audit_log` (s3://bucket/prefix on a cluster) and posts it to the Broker at `broker_url`. `run_id`: the
    KFP run's id (dsl.PIPELINE_JOB_ID_PLACEHOLDER), the one the dashboard and the package's lineage show; the
    final status names the backend's workflow instead."""
    from flowline.components.run_outcome.outcome import record_outcome

    what = record_outcome(use_case_name, status.state, run_id or status.pipeline_job_resource_name,
                          status.error_message, audit_log, broker_url, workflow=status.pipeline_job_resource_name)
    print(f"run outcome: {what}")
