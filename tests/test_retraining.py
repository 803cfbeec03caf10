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
    with pytest.raises(ValueError, match="--retrain-trials -3"):
        RetrainingAction("local", "churn", str(tmp_path / "a.jsonl"), trials=-3)
    with pytest.raises(ValueError, match="--retrain-cooldown nan"):
        RetrainingAction("local", "churn", str(tmp_path / "a.jsonl"), cooldown_seconds=float("nan"))


@pytest.mark.parametrize(("name", "extra", "said"), [
    ("my-own", ["--on-drift", "local"], "use case 'my-own' is not built in, so a retraining run could not find it"),
    ("churn", ["--on-drift", "kfp", "--kfp-host", "http://kfp"], "--on-drift kfp: use case 'churn' reads its data"),
])
def test_a_retraining_that_could_never_start_is_refused_when_the_monitor_starts(name, extra, said, tmp_path, capsys):
    from flowline.pipelines.cli import main
    from flowline.use_case_loader import load_use_case

    package = tmp_path / "package"
    package.mkdir()
    (package / "manifest.json").write_text("{}")
    (package / "use_case.json").write_text(load_use_case("churn").model_copy(update={"name": name}).model_dump_json())
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--drift-monitor", f"{name}-drift={package}", "--runs-dir", str(tmp_path), *extra])
    assert caught.value.code == 2 and said in capsys.readouterr().err


def test_the_cooldown_survives_a_restart_and_a_failed_start_is_answered_and_recorded(tmp_path, monkeypatch):
    """A promoted package restarts its drift monitor: the cool-down is read back from the audit log. A run that
    cannot start (here KFP refuses the token) is an answer and a record, never a failed drift event."""
    monkeypatch.setenv("KFP_TOKEN", "s3cr3t-kfp-token")
    seen: list[str] = []

    def kfp(method, path, body):
        seen.append(path)
        return kfp_api([])(method, path, body)

    api = StandInApiServer(kfp)
    log = tmp_path / "audit.jsonl"
    settings = dict(trials=5, kfp_host=f"http://127.0.0.1:{api.server.server_port}", cooldown_seconds=3600,
                    source="s3://flowline-data/telco/telco_customer_churn.csv")
    assert RetrainingAction("kfp", "churn", str(log), **settings).on_drift("churn", "v1", P_VALUES)["started"]
    restarted = RetrainingAction("kfp", "churn", str(log), **settings)
    again = restarted.on_drift("churn", "v2", P_VALUES)
    assert again["started"] is False and "less than 3600 s ago" in again["reason"]
    assert sum(path.endswith("/runs") for path in seen) == 1

    refusing = StandInApiServer(lambda method, path, body: (401, {"error": "Unauthorized"}))
    failing = RetrainingAction("kfp", "churn", str(tmp_path / "other.jsonl"),
                               **{**settings, "kfp_host": f"http://127.0.0.1:{refusing.server.server_port}"})
    answer = failing.on_drift("churn", "v1", P_VALUES)
    assert answer["started"] is False and "401" in answer["error"]
    (record,) = verify(tmp_path / "other.jsonl")
    assert record["what"]["started"] is False and "401" in record["what"]["error"]
    assert "less than 3600 s ago" in failing.on_drift("churn", "v1", P_VALUES)["reason"]  # backed off, not retried
    assert refusing.requests[0]["authorization"] == "Bearer s3cr3t-kfp-token"  # flowline submit's credentials


def test_on_kfp_a_retraining_waits_for_the_last_run_to_end(tmp_path):
    states = {"run-1": "RUNNING"}
    api = StandInApiServer(kfp_api([], states))
    action = RetrainingAction("kfp", "churn", str(tmp_path / "audit.jsonl"), kfp_host=f"http://127.0.0.1:"
                              f"{api.server.server_port}", cooldown_seconds=0,
                              source="s3://flowline-data/telco/telco_customer_churn.csv")
    assert action.on_drift("churn", "v1", P_VALUES)["run_id"] == "run-1"
    waiting = action.on_drift("churn", "v1", P_VALUES)
    assert waiting["started"] is False and waiting["reason"] == "the retraining run run-1 is still running on KFP"
    states["run-1"] = "SUCCEEDED"
    assert action.on_drift("churn", "v1", P_VALUES)["started"]
    assert sum(r["method"] == "POST" and r["path"].endswith("/runs") for r in api.requests) == 2

