"""The retraining action's choices: the KFP path up to the requests kfp.Client sends, the cool-down, bad settings.
The local path runs end to end in tests/serving/test_drift_retraining.py."""

import json

import pytest
from stand_in_api import KFP_API, StandInApiServer, kfp_api

from flowline.audit import verify
from flowline.pipelines.retraining import RetrainingAction

P_VALUES = {"MonthlyCharges": 1e-9, "tenure": 0.4, "Contract": 0.02, "gender": 0.9}


def test_drift_submits_one_kfp_run_records_it_and_waits_out_the_cooldown(tmp_path):
    api = StandInApiServer(kfp_api([]))
    log = tmp_path / "audit.jsonl"
    action = RetrainingAction("kfp", "churn", str(log), trials=5,
                              kfp_host=f"http://127.0.0.1:{api.server.server_port}", cooldown_seconds=3600,
                              source="s3://flowline-data/telco/telco_customer_churn.csv")
    started = action.on_drift("churn", "v1", P_VALUES)
    assert started == {"action": "kfp", "started": True, "run_id": "run-1", "experiment_id": "exp-new"}
    (run,) = [r["body"] for r in api.requests if r["method"] == "POST" and r["path"] == f"{KFP_API}/runs"]
    spec = run["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "flowline-churn"
    assert '\\"path\\":\\"s3://flowline-data/telco/telco_customer_churn.csv\\"' in json.dumps(spec)  # in the use case
    assert run["runtime_config"]["parameters"] == {"trials": 5}
    again = action.on_drift("churn", "v1", P_VALUES)
    assert again["started"] is False and "less than 3600 s ago" in again["reason"]
    (record,) = verify(log)
    assert record["action"] == "retraining_triggered" and record["what"]["run_id"] == "run-1"
    assert record["what"]["lowest_p_values"] == {"MonthlyCharges": 1e-9, "Contract": 0.02, "tenure": 0.4}  # the 3 lowest


def test_off_does_nothing_and_bad_settings_are_refused(tmp_path):
    assert RetrainingAction("off", "churn", str(tmp_path / "a.jsonl")).on_drift("churn", "v1", P_VALUES) == {
        "action": "off"}
    assert not (tmp_path / "a.jsonl").exists()
    with pytest.raises(ValueError, match="choose one of off, local, kfp"):
        RetrainingAction("email", "churn", "a.jsonl")
    with pytest.raises(ValueError, match="needs the KFP host"):
        RetrainingAction("kfp", "churn", "a.jsonl")
