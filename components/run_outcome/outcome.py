"""A pipeline run's outcome, recorded when it ends: in the audit trail, and as a CloudEvent.

The event goes to the flowline-events Broker (type dev.flowline.pipeline.run.finished, with
the `usecase` attribute its Triggers filter on), which hands it to the use case's drift
monitor: flowline_pipeline_runs_total{status} and the last-run timestamp feed the
FlowlinePipelineRunFailed and stale-run alerts.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

from flowline import audit
from flowline.events import PIPELINE_RUN_EVENT

EVENT_SOURCE = "flowline/pipelines"
# PipelineTaskFinalStatus.state when every task succeeded: the open-source backend (2.14 to 2.16) passes on the
# pipeline's MLMD execution state, COMPLETE (CACHED when cached whole); the SDK's documented value is SUCCEEDED.
SUCCEEDED_STATES = {"SUCCEEDED", "COMPLETE", "CACHED"}


def run_status(state: str) -> str:
    """"succeeded" or "failed", the status the alerts and the audit trail use, from KFP's final state."""
    return "succeeded" if state.upper() in SUCCEEDED_STATES else "failed"


def event_id(run_id: str, status: str) -> str:
    """The same id for the same run's outcome, so the step's retries are one event to CloudEvents consumers
    (source and id identify an event); a random one where there is no run id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{EVENT_SOURCE}/{run_id}/{status}")) if run_id else str(uuid.uuid4())


def post_run_event(broker_url: str, use_case: str, status: str, run_id: str, timeout: float = 10.0) -> None:
    """Send the outcome to the Broker as a binary-mode CloudEvent; raise RuntimeError naming the Broker if refused."""
    request = urllib.request.Request(
        broker_url, method="POST",
        data=json.dumps({"use_case": use_case, "status": status, "run_id": run_id}).encode(),
        headers={"ce-specversion": "1.0", "ce-type": PIPELINE_RUN_EVENT, "ce-source": EVENT_SOURCE,
                 "ce-id": event_id(run_id, status), "ce-usecase": use_case, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except (urllib.error.URLError, OSError) as error:
        raise RuntimeError(f"the Broker at {broker_url} did not take the run's outcome: {error}") from error


def record_outcome(use_case: str, state: str, run_id: str, error: str, audit_log: str, broker_url: str,
                   workflow: str = "") -> dict:
    """Record a finished run (`state` as KFP reports it; `run_id` the KFP run's id, which its package's lineage
    names too; `workflow` the backend's name for it) in `audit_log` and at `broker_url`, each when set. Once:
    the step is retried (a Broker that refused), and a retry finds the run recorded already. The open-source
    backend passes no error text (its driver leaves it empty): the failed step is in the run's graph."""
    status = run_status(state)
    what = {"use_case": use_case, "outcome": status, "state": state, "run_id": run_id, "error": error or None,
            **({"workflow": workflow} if workflow and workflow != run_id else {})}
    if audit_log and not (run_id and _recorded(audit_log, what)):
        audit.append(audit_log, "pipeline_run", what)
    if broker_url:
        post_run_event(broker_url, use_case, status, run_id)
    return what


def _recorded(audit_log: str, what: dict) -> bool:
    """Whether the log holds this run's outcome already (read as every reader of a log reads it, `audit.read`)."""
    try:
        records = audit.read(audit_log)
    except audit.NoAuditLog:
        return False
    return any(record["action"] == "pipeline_run" and record["what"] == what for record in records)
