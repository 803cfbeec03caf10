"""Drift-triggered retraining, the local path end to end: a drifted window starts `flowline run`, which
produces a new package; the trigger and the run are in the audit log."""

import json
import time

import httpx
import pandas as pd
import pytest

from flowline.audit import verify as verify_audit_log
from flowline.drift import load_calibration
from flowline.inference_services.local_server import LOOPBACK, SERVE_COMMAND, free_port, running_process
from flowline.registry import packages_of
from flowline.use_case import UseCase
from serving_helpers import records_of

pytestmark = [pytest.mark.xdist_group("serving"), pytest.mark.pipeline]
RUN_TIMEOUT_S = 600


def drifted_window(churn_package, size: int) -> pd.DataFrame:
    use_case = UseCase.model_validate_json((churn_package / "use_case.json").read_text())
    rows = pd.read_parquet(churn_package.parent / "test")[use_case.feature_columns].sample(size, random_state=4)
    return rows.assign(MonthlyCharges=rows["MonthlyCharges"] * 1.3)  # prices up 30 %


def post_window(client: httpx.Client, rows: pd.DataFrame) -> list:
    response = client.post("/v1/models/churn-drift:predict", json={"instances": records_of(rows)}, headers={
        "ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.request", "ce-id": "1",
        "ce-source": "http://localhost:9081/", "content-type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()["tests"]


def test_a_drifted_window_starts_one_local_retraining_run_recorded_in_the_audit_log(
        churn_package, data_home, tmp_path):
    runs, port = tmp_path / "runs", free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [*SERVE_COMMAND, "--drift-monitor", str(churn_package),
               "--host", LOOPBACK, "--port", str(port), "--on-drift", "local", "--runs-dir", str(runs),
               "--retrain-trials", "1"]
    size = load_calibration(churn_package / "drift").window_size
    window = drifted_window(churn_package, size)
    with running_process(command, f"{url}/v2/health/ready", str(tmp_path / "monitor.log")), \
            httpx.Client(base_url=url, timeout=120) as client:
        (test,) = post_window(client, window)
        assert test["is_drift"] and test["retraining"]["started"] is True
        (again,) = post_window(client, window)  # still drifting while the run is under way: no second run
        assert again["is_drift"] and again["retraining"]["started"] is False
        assert "still running" in again["retraining"]["reason"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and not any(
                r["action"] == "gate_decision" for r in verify_audit_log(runs / "audit.jsonl")):
            time.sleep(2)
    records = verify_audit_log(runs / "audit.jsonl")
    assert [r["action"] for r in records] == ["retraining_triggered", "pipeline_run", "package", "gate_decision"], \
        (runs / "retraining.log").read_text()[-3000:]
    trigger = records[0]["what"]
    assert trigger["use_case"] == "churn" and trigger["action"] == "local" and trigger["pid"] == test["retraining"]["pid"]
    assert "MonthlyCharges" in trigger["lowest_p_values"]
    assert records[1]["what"]["outcome"] == "succeeded"
    (package,) = packages_of(runs, "churn")
    assert json.loads((package / "manifest.json").read_text())["version"] == records[2]["what"]["package_version"]
