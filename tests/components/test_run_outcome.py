"""The exit handler's record of a run: the audit trail, and the CloudEvent the Broker routes to the drift monitor."""

import http.server
import json
import threading

import pytest

from flowline.audit import verify
from flowline.components.run_outcome.outcome import record_outcome, run_status
from flowline.events import PIPELINE_RUN_EVENT


@pytest.fixture
def broker():
    """A stand-in Broker ingress on loopback that keeps what it is sent (Knative cannot run here)."""
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/flowline/flowline-events", received
    server.shutdown()


def test_kfp_final_states_map_to_succeeded_or_failed():
    """The open-source backend (2.14 to 2.16, backend/src/v2/driver/resolve.go) passes the pipeline's MLMD state,
    COMPLETE when it succeeded: it was read as failed, so every good run fired FlowlinePipelineRunFailed."""
    assert {run_status(state) for state in ("SUCCEEDED", "COMPLETE", "CACHED", "complete")} == {"succeeded"}
    assert {run_status(state) for state in ("FAILED", "CANCELED", "SYSTEM_ERROR", "RUNNING", "")} == {"failed"}


def test_the_record_names_the_kfp_run_and_the_backends_workflow(tmp_path):
    """The final status names the Argo workflow, not the run id the dashboard and the package's lineage show."""
    log = tmp_path / "audit.jsonl"
    what = record_outcome("churn", "COMPLETE", "0f5c7a1e-run", "", str(log), "", workflow="flowline-churn-x7k2p")
    assert what == {"use_case": "churn", "outcome": "succeeded", "state": "COMPLETE", "run_id": "0f5c7a1e-run",
                    "error": None, "workflow": "flowline-churn-x7k2p"}
    assert verify(log)[0]["what"] == what


def test_a_failed_run_is_recorded_in_the_audit_trail_and_sent_to_the_broker(broker, tmp_path):
    url, received = broker
    log = tmp_path / "audit.jsonl"
    record_outcome("churn", "FAILED", "runs/abc", "train: out of memory", str(log), url)
    record_outcome("churn", "SUCCEEDED", "runs/def", "", str(log), url)
    records = verify(log)
    assert [(r["action"], r["what"]["outcome"], r["what"]["run_id"]) for r in records] == [
        ("pipeline_run", "failed", "runs/abc"), ("pipeline_run", "succeeded", "runs/def")]
    assert records[0]["what"]["error"] == "train: out of memory" and records[1]["what"]["error"] is None
    first = received[0]
    # the attributes the Trigger filters on (kustomize/base/eventing.yaml), and the monitor's payload
    assert first["headers"]["ce-type"] == PIPELINE_RUN_EVENT and first["headers"]["ce-usecase"] == "churn"
    assert first["headers"]["ce-specversion"] == "1.0" and first["headers"]["ce-id"]
    assert [event["body"] for event in received] == [
        {"use_case": "churn", "status": "failed", "run_id": "runs/abc"},
        {"use_case": "churn", "status": "succeeded", "run_id": "runs/def"}]


def test_an_unreachable_broker_is_named_after_the_audit_record_is_written(tmp_path):
    log = tmp_path / "audit.jsonl"
    with pytest.raises(RuntimeError, match="the Broker at http://127.0.0.1:9/ did not take"):
        record_outcome("churn", "SUCCEEDED", "runs/x", "", str(log), "http://127.0.0.1:9/")
    assert len(verify(log)) == 1  # the audit trail has it even so


def test_a_retried_step_records_its_run_once_and_sends_the_same_event(broker, tmp_path):
    """KFP retries the step when the Broker refused: one audit record, and one event id for consumers."""
    url, received = broker
    log = tmp_path / "audit.jsonl"
    for _ in range(3):
        record_outcome("churn", "FAILED", "runs/abc", "train: out of memory", str(log), url)
    record_outcome("churn", "SUCCEEDED", "runs/def", "", str(log), url)
    assert [r["what"]["run_id"] for r in verify(log)] == ["runs/abc", "runs/def"]
    ids = [event["headers"]["ce-id"] for event in received]
    assert len(ids) == 4 and ids[0] == ids[1] == ids[2] != ids[3]
