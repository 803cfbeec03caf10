"""flowline submit: kfp.Client's requests, checked against a stand-in KFP API server on loopback."""

import re
import warnings

import pytest
from stand_in_api import KFP_API as API, StandInApiServer, kfp_api, refusing

from flowline.inference_services.local_server import free_port
from flowline.pipelines.cli import main
from flowline.pipelines.submission import SubmissionError, SubmissionWarning, kfp_cron, parse_parameters

TELCO_IN_S3 = "s3://flowline-data/telco/telco_customer_churn.csv"


CHAMPION = "s3://flowline-models/churn/3ed4ba348c07"  # the package serving now, which a training run must beat


def posted(api: StandInApiServer, route: str) -> dict:
    (request,) = [r for r in api.requests if r["method"] == "POST" and r["path"].split("?")[0] == f"{API}/{route}"]
    return request["body"]


def test_a_run_is_the_compiled_pipeline_with_its_arguments_in_a_new_experiment(capsys):
    api = StandInApiServer(kfp_api([]))
    host = f"http://127.0.0.1:{api.server.server_port}"
    assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", host, "--param", "trials=12",
                 "--param", "champion=s3://m/churn/v1",
                 "--audit-log", "s3://flowline-audit/churn", "--no-cache"]) == 0
    assert posted(api, "experiments")["display_name"] == "flowline-churn"
    run = posted(api, "runs")
    assert run["experiment_id"] == "exp-new"
    assert re.fullmatch(r"flowline-churn \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", run["display_name"])  # told apart by time
    assert run["service_account"] == "flowline-pipeline-runner"  # kustomize's, which may deploy; KFP's may not
    # With Kubernetes settings, kfp.Client sends the pipeline and its platform spec side by side.
    spec, platform = run["pipeline_spec"]["pipeline_spec"], run["pipeline_spec"]["platform_spec"]
    assert spec["pipelineInfo"]["name"] == "flowline-churn"
    ingest = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-ingest"]
    assert ingest["secretAsEnv"][0]["secretName"] == "flowline-s3"
    assert sorted(spec["root"]["dag"]["tasks"]) == ["exit-handler-1", "run-outcome"]  # the compiled, cluster form
    assert run["runtime_config"]["parameters"] == {
        "trials": 12, "champion": "s3://m/churn/v1", "audit_log": "s3://flowline-audit/churn"}
    # --no-cache: every task's caching turned off in the spec sent
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert all(not task["cachingOptions"].get("enableCache", False) for task in tasks.values())
    assert f"run run-1 in experiment exp-new: {host}/#/runs/details/run-1" in capsys.readouterr().out


def test_a_schedule_makes_a_recurring_run_in_the_existing_experiment():
    api = StandInApiServer(kfp_api([{"experiment_id": "exp-7", "display_name": "retraining"}]))
    assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", f"http://127.0.0.1:{api.server.server_port}",
                 "--experiment", "retraining", "--schedule", "0 3 * * 1"]) == 0
    assert not [r for r in api.requests if r["method"] == "POST" and r["path"].startswith(f"{API}/experiments")]
    recurring = posted(api, "recurringruns")
    assert recurring["experiment_id"] == "exp-7"
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert recurring["max_concurrency"] == "1" or recurring["max_concurrency"] == 1
    assert recurring["no_catchup"] is True
    assert recurring["service_account"] == "flowline-pipeline-runner"
    tasks = recurring["pipeline_spec"]["pipeline_spec"]["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert tasks["split"]["cachingOptions"] == {"enableCache": True}  # the compiled choices stay


def test_a_second_schedule_of_the_same_name_is_refused_unless_it_replaces_the_first(capsys):
    """Submitting again to change the cron left both schedules active: two trainings, two canaries, a week."""
    schedules = [{"recurring_run_id": "rr-old", "display_name": "flowline-churn", "experiment_id": "exp-7"}]
    api = StandInApiServer(kfp_api([{"experiment_id": "exp-7", "display_name": "flowline-churn"}],
                                   recurring_runs=schedules))
    command = ["submit", "churn", "--source", TELCO_IN_S3, "--host", f"http://127.0.0.1:{api.server.server_port}",
               "--schedule", "0 4 * * 1", "--param", "champion=s3://flowline-models/churn/3ed4ba348c07"]
    assert main(command) == 1
    assert "has a recurring run 'flowline-churn' already (rr-old)" in capsys.readouterr().err
    assert not [r for r in api.requests if r["method"] in ("POST", "DELETE") and "recurringruns" in r["path"]]
    assert main([*command, "--replace"]) == 0
    assert "deleted recurring run rr-old (--replace)" in capsys.readouterr().out
    deleted = [r["path"] for r in api.requests if r["method"] == "DELETE"]
    assert deleted == [f"{API}/recurringruns/rr-old"]
    assert posted(api, "recurringruns")["display_name"] == "flowline-churn"


def test_a_run_without_a_champion_or_with_another_namespace_is_told_what_it_will_do(capsys):
    api = StandInApiServer(kfp_api([]))
    host = f"http://127.0.0.1:{api.server.server_port}"
    with pytest.warns(SubmissionWarning) as caught:  # a notebook's submit() is told as the command is
        assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", host, "--namespace", "team-a"]) == 0
    said = [str(warning.message) for warning in caught]
    assert said[0].startswith("no champion given (--param champion=s3://...): the run compares its model with none")
    assert said[1].endswith("not the profile namespace 'team-a': --param namespace=team-a acts there")
    with pytest.warns(SubmissionWarning, match="tuning_backend=optuna: the search steps were compiled to wait"):
        assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", host, "--param", f"champion={CHAMPION}",
                     "--param", "tuning_backend=optuna"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", SubmissionWarning)
        assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", host, "--namespace", "team-a",
                     "--param", f"champion={CHAMPION}", "--param", "namespace=team-a"]) == 0


def test_batch_scoring_is_scheduled_as_a_recurring_run_of_the_batch_pipeline(capsys):
    api = StandInApiServer(kfp_api([]))
    host = f"http://127.0.0.1:{api.server.server_port}"
    assert main(["submit", "churn", "--batch", "--host", host, "--schedule", "0 2 * * *",
                 "--param", "package_uri=s3://m/churn/v1", "--param", "input_uri=s3://d/customers.parquet",
                 "--audit-log", "s3://flowline-audit/churn"]) == 0
    recurring = posted(api, "recurringruns")
    assert recurring["display_name"] == "flowline-churn-batch"
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *" and recurring["no_catchup"] is True
    spec = recurring["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "flowline-churn-batch" and list(spec["root"]["dag"]["tasks"]) == ["score"]
    assert recurring["runtime_config"]["parameters"] == {
        "package_uri": "s3://m/churn/v1", "input_uri": "s3://d/customers.parquet", "audit_log": "s3://flowline-audit/churn"}
    assert "recurring run" in capsys.readouterr().out

    # Without the package or the input, nothing is sent.
    before = len(api.requests)
    assert main(["submit", "churn", "--batch", "--host", host, "--param", "package_uri=s3://m/churn/v1"]) == 1
    assert "a batch-scoring run needs --param input_uri=..." in capsys.readouterr().err
    assert len(api.requests) == before


def test_bad_schedules_and_parameters_are_refused_before_anything_is_sent(capsys):
    assert kfp_cron("*/15 * * * *") == "0 */15 * * * *" and kfp_cron("0 0 9 ? * 2-6") == "0 0 9 ? * 2-6"
    with pytest.raises(SubmissionError, match="5 fields"):
        kfp_cron("daily")
    assert parse_parameters(["trials=3", "source=s3://b/k.csv"]) == {"trials": "3", "source": "s3://b/k.csv"}
    with pytest.raises(SubmissionError, match="NAME=VALUE"):
        parse_parameters(["trials"])
    api = StandInApiServer(kfp_api([]))
    assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", f"http://127.0.0.1:{api.server.server_port}",
                 "--schedule", "weekly"]) == 1
    assert "5 fields" in capsys.readouterr().err
    assert api.requests == []


@pytest.mark.parametrize(("param", "said"), [
    ("trails=5", "--param trails: the pipeline has no input 'trails' (inputs: "),
    ("trials=abc", "--param trials: expected number integer, got 'abc'"),
    ("canary_percent=12.5", "--param canary_percent: expected number integer, got '12.5'"),
    # in range, or the run failed late: at the tune step, or at deploy after the whole training
    ("canary_percent=150", "--param canary_percent: expected 0 to 100, got 150"),
    ("tuning_backend=katbi",
     "--param tuning_backend: expected auto, optuna or katib (empty: the use case's), got 'katbi'"),
    ("trials=-5", "--param trials: expected 0 (the use case's budget) to 100,000, got -5"),
])
def test_parameters_the_pipeline_does_not_take_are_refused_before_anything_is_created(param, said, capsys):
    api = StandInApiServer(kfp_api([]))
    assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", f"http://127.0.0.1:{api.server.server_port}",
                 "--param", param]) == 1
    assert said in capsys.readouterr().err
    assert api.requests == []  # refused before KFP is asked anything


def test_an_unreachable_kfp_is_one_line_naming_the_url(capsys):
    closed = f"http://127.0.0.1:{free_port()}"
    assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", closed, "--param", f"champion={CHAMPION}"]) == 1
    shown = capsys.readouterr()
    assert shown.err == f"flowline: cannot reach KFP at {closed}: connection refused (is the address right, and the " \
                        "port forwarded?)\n"
    assert shown.out == ""


@pytest.mark.parametrize(("status", "said"), [(401, "401 Unauthorized"), (403, "403 Forbidden")])
def test_kfp_refusing_the_token_is_one_line_after_one_request(status, said, capsys, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "expired")
    api = StandInApiServer(refusing(status))
    host = f"http://127.0.0.1:{api.server.server_port}"
    assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", host, "--param", f"champion={CHAMPION}"]) == 1
    assert capsys.readouterr().err == f"flowline: KFP at {host} refused the request ({said}): check the bearer " \
                                      "token in $KFP_TOKEN\n"
    assert [request["path"] for request in api.requests] == [f"{API}/healthz"]  # asked once, not retried


@pytest.mark.parametrize(("status", "said"), [(404, "404 Not Found"), (503, "503 Service Unavailable")])
def test_an_address_answering_an_http_error_is_one_line_naming_kfp_and_the_url(status, said, capsys):
    """A wrong port-forward answers 404, a KFP API not yet up 503: urllib's bare HTTPError named neither."""
    api = StandInApiServer(lambda method, path, body: (status, {"error": said}))
    host = f"http://127.0.0.1:{api.server.server_port}"
    assert main(["submit", "churn", "--source", TELCO_IN_S3, "--host", host, "--param", f"champion={CHAMPION}"]) == 1
    assert capsys.readouterr().err == f"flowline: KFP at {host} answered {said} to {host}{API}/healthz: is this the " \
                                      "address of the KFP API (or of the Pipelines UI before it), and is it up?\n"
    assert [request["path"] for request in api.requests] == [f"{API}/healthz"]


def test_submit_from_python_gets_the_same_one_line_errors_as_the_command():
    """A notebook calls submit() itself: a host without its scheme, an unreachable one and a Python value of the
    wrong type for an input are one-line errors, not urllib's traceback or a value sent as it is."""
    from flowline.cluster import ClusterError
    from flowline.pipelines.submission import SubmissionError, submit
    from flowline.use_case_loader import load_use_case

    churn = load_use_case("churn")
    with pytest.raises(SubmissionError, match="KFP host 'localhost:8080': give its URL with the scheme, for example "
                                              "http://localhost:8080"):
        submit(churn, "localhost:8080", source=TELCO_IN_S3)
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError, match=f"cannot reach KFP at {closed}: connection refused"):
        submit(churn, closed, source=TELCO_IN_S3)
    api = StandInApiServer(kfp_api([]))
    for name, value, said in [("trials", 2.5, "expected number integer, got float 2.5"),
                              ("trials", True, "expected number integer, got bool True")]:
        with pytest.raises(SubmissionError, match=f"parameter {name}: {said}"):
            submit(churn, f"http://127.0.0.1:{api.server.server_port}", source=TELCO_IN_S3, parameters={name: value})
    assert api.requests == []
