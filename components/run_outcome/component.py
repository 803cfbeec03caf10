"""KFP component: the pipeline's exit handler, which records how the run ended."""

from kfp import dsl


def run_outcome(use_case_name: str, audit_log: str, broker_url: str, status: dsl.PipelineTaskFinalStatus):
    """Runs after every other task, whether they succeeded or not: records the run's outcome in
    `audit_log` (s3://bucket/prefix on a cluster) and posts it to the Broker at `broker_url`."""
    from flowline.components.run_outcome.outcome import record_outcome

    what = record_outcome(use_case_name, status.state, status.pipeline_job_resource_name, status.error_message,
                          audit_log, broker_url)
    print(f"run outcome: {what}")
