"""Deploy, promote, rollback: manifests, and KServeClient's requests checked against a stand-in API server."""

import json
from pathlib import Path

import pytest
import yaml
from stand_in_api import NOT_FOUND, StandInApiServer, cluster_with, unreachable_or_refusing

from flowline.audit import verify as verify_audit_log
from flowline.canary import patch_inference_service
from flowline.cluster import apply, kubeconfig_available
from flowline.inference_service import inference_service, promoted, rolled_back

ROOT = Path(__file__).resolve().parents[2]
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/flowline/inferenceservices"


def serving(existing: dict | None):
    """Answers like the API server would for one InferenceService (or none)."""

    def respond(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        if method == "GET" and existing is None:
            return NOT_FOUND
        return 200, body or existing

    return respond


@pytest.fixture
def no_cluster(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_the_rendered_service_is_the_one_kustomize_ships():
    shipped = next(d for d in yaml.safe_load_all((ROOT / "kustomize/base/inference-services.yaml").read_text())
                   if d["metadata"]["name"] == "churn")
    assert inference_service("churn", "s3://flowline-models/churn/current") == shipped


def test_a_canary_percent_is_set_checked_and_removed_or_zeroed():
    manifest = inference_service("churn", "s3://b/churn/v2", canary_percent=10)
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert "canaryTrafficPercent" not in promoted(manifest)["spec"]["predictor"]
    assert rolled_back(manifest)["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 10  # the input is left as it was
    with pytest.raises(ValueError, match="0..100"):
        inference_service("churn", "s3://b/churn/v2", canary_percent=120)


def test_a_new_service_is_created(tmp_path):
    api = StandInApiServer(serving(None))
    manifest = inference_service("churn", "s3://b/churn/v1", namespace="flowline")
    assert apply(manifest, "flowline", api.kubeconfig(tmp_path)) == "created"
    get, create = api.requests
    assert (get["method"], get["path"]) == ("GET", f"{ISVC_PATH}/churn")
    assert (create["method"], create["path"]) == ("POST", ISVC_PATH)
    assert create["body"] == manifest


def test_a_serving_champion_gets_the_new_version_as_a_canary_and_keeps_its_overlays_settings(tmp_path):
    champion = inference_service("churn", "s3://b/churn/v1", namespace="flowline")
    champion["metadata"]["resourceVersion"] = "4711"
    champion["spec"]["predictor"]["minReplicas"] = 2  # what the prod overlay set, which the package does not know
    api = StandInApiServer(serving(champion))
    challenger = inference_service("churn", "s3://b/churn/v2", namespace="flowline")
    assert apply(challenger, "flowline", api.kubeconfig(tmp_path), canary_percent=20) == "canary"
    patch = api.requests[-1]
    assert (patch["method"], patch["path"]) == ("PATCH", f"{ISVC_PATH}/churn")
    assert patch["content_type"] == "application/merge-patch+json"
    # Only the new package and its share of the traffic: replicas, resources and labels stay the live ones.
    assert patch["body"] == {"metadata": {"resourceVersion": "4711"},
                             "spec": {"predictor": {"model": {"storageUri": "s3://b/churn/v2"},
                                                    "canaryTrafficPercent": 20}}}


@pytest.mark.parametrize(("operation", "expected"), [("promote", None), ("rollback", 0)])
def test_promote_and_rollback_are_kserve_client_merge_patches(tmp_path, operation, expected):
    api = StandInApiServer(serving(inference_service("churn", "s3://b/churn/v1", namespace="flowline")))
    patch_inference_service("churn", "flowline", operation, api.kubeconfig(tmp_path))
    patch = api.requests[0]  # a promotion then reads the model and its drift monitor (tested below)
    assert (patch["method"], patch["path"]) == ("PATCH", f"{ISVC_PATH}/churn")
    assert patch["content_type"] == "application/merge-patch+json"
    # null removes canaryTrafficPercent (the canary takes all traffic); 0 sends it all to the champion
    assert patch["body"] == {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                             "metadata": {"name": "churn", "namespace": "flowline"},
                             "spec": {"predictor": {"canaryTrafficPercent": expected}}}


def drift_monitor(storage_uri: str) -> dict:
    monitor = inference_service("churn-drift", storage_uri, namespace="flowline")
    monitor["metadata"]["resourceVersion"] = "81"
    return monitor


def test_a_promotion_moves_the_drift_monitor_to_the_promoted_package(tmp_path):
    # After `flowline deploy`, the model's spec holds the canary's package; promoting gives it all the traffic.
    model = inference_service("churn", "s3://b/churn/v2", namespace="flowline", canary_percent=10)
    api = StandInApiServer(cluster_with(model, drift_monitor("s3://flowline-models/churn/current")))
    said = patch_inference_service("churn", "flowline", "promote", api.kubeconfig(tmp_path))
    assert said == "churn-drift now tests against s3://b/churn/v2"
    moved = api.requests[-1]
    assert (moved["method"], moved["path"]) == ("PATCH", f"{ISVC_PATH}/churn-drift")
    assert moved["content_type"] == "application/merge-patch+json"
    # The package alone, and only if the monitor did not change since it was read: its replicas stay one.
    assert moved["body"] == {"metadata": {"resourceVersion": "81"},
                             "spec": {"predictor": {"model": {"storageUri": "s3://b/churn/v2"}}}}


def test_a_rollback_a_monitor_already_there_or_none_at_all_is_left_alone(tmp_path):
    model = inference_service("churn", "s3://b/churn/v2", namespace="flowline", canary_percent=10)
    api = StandInApiServer(cluster_with(model, drift_monitor("s3://flowline-models/churn/current")))
    assert patch_inference_service("churn", "flowline", "rollback", api.kubeconfig(tmp_path)) == ""
    assert [r["method"] for r in api.requests] == ["PATCH"]  # the model's traffic, nothing else
    api = StandInApiServer(cluster_with(model, drift_monitor("s3://b/churn/v2")))
    assert patch_inference_service("churn", "flowline", "promote", api.kubeconfig(tmp_path)) == (
        "churn-drift already tests against s3://b/churn/v2")
    assert [r["method"] for r in api.requests] == ["PATCH", "GET", "GET"]
    api = StandInApiServer(cluster_with(model))  # as churn-challenger: a model without a monitor of its own
    assert patch_inference_service("churn", "flowline", "promote", api.kubeconfig(tmp_path)) == (
        "no drift monitor churn-drift")
    assert [r["method"] for r in api.requests] == ["PATCH", "GET", "GET"]


@pytest.mark.parametrize(("canary_share", "said"), [(None, "unchanged"), (10, "unchanged: already the canary")])
def test_a_retried_deploy_of_the_served_package_changes_nothing(tmp_path, canary_share, said):
    """The deploy step is retried when a later part of it failed (its audit record): the service it created then
    got a canary of its own package, split 90/10 between two revisions of one version, recorded as a canary."""
    served = inference_service("churn", "s3://b/churn/v1", namespace="flowline")
    served["metadata"]["resourceVersion"] = "7"
    if canary_share:
        served["spec"]["predictor"]["canaryTrafficPercent"] = canary_share
    api = StandInApiServer(serving(served))
    again = inference_service("churn", "s3://b/churn/v1", namespace="flowline")
    assert apply(again, "flowline", api.kubeconfig(tmp_path)) == said
    assert [request["method"] for request in api.requests] == ["GET"]


def test_a_rolled_back_package_deployed_again_comes_in_as_a_canary_again(tmp_path):
    """Its canary at 0%: "unchanged" would have moved the drift monitor to a package serving no traffic."""
    served = inference_service("churn", "s3://b/churn/v2", namespace="flowline")
    served["metadata"]["resourceVersion"] = "9"
    served["spec"]["predictor"]["canaryTrafficPercent"] = 0
    api = StandInApiServer(serving(served))
    again = inference_service("churn", "s3://b/churn/v2", namespace="flowline")
    assert apply(again, "flowline", api.kubeconfig(tmp_path), canary_percent=10) == "canary"
    assert api.requests[-1]["body"]["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_a_first_deploy_moves_the_drift_monitor_and_records_it(tmp_path):
    from flowline.deployment import deploy_package

    api = StandInApiServer(cluster_with(drift_monitor("s3://flowline-models/churn/current")))
    outcome = deploy_package(str(deployable(tmp_path)), "s3://b/churn/v1", "flowline", str(tmp_path / "isvc.yaml"),
                             apply_to_cluster=True, kubeconfig=api.kubeconfig(tmp_path),
                             audit_log=str(tmp_path / "audit.jsonl"))
    assert outcome["action"] == "created"
    assert outcome["drift_monitor"] == "churn-drift now tests against s3://b/churn/v1"
    assert (api.requests[-1]["method"], api.requests[-1]["path"]) == ("PATCH", f"{ISVC_PATH}/churn-drift")
    [record] = verify_audit_log(tmp_path / "audit.jsonl")
    assert record["what"]["drift_monitor"] == outcome["drift_monitor"]


def test_analyze_applying_a_promotion_records_where_the_drift_monitor_went(tmp_path):
    from flowline.ab_testing import ArmOutcomes, CanaryPolicy
    from flowline.canary import judge_canary

    model = inference_service("churn", "s3://b/churn/v2", namespace="flowline", canary_percent=10)
    api = StandInApiServer(cluster_with(model, drift_monitor("s3://flowline-models/churn/current")))
    arms = {"champion": ArmOutcomes(requests=4000, errors=0, successes=1000, latency_p99_seconds=0.01),
            "canary": ArmOutcomes(requests=4000, errors=0, successes=1400, latency_p99_seconds=0.01)}
    decided = judge_canary(arms, CanaryPolicy(), str(tmp_path / "audit.jsonl"), "churn", "flowline", apply=True,
                           kubeconfig=api.kubeconfig(tmp_path))
    assert decided["decision"] == "promote" and decided["applied"]
    assert decided["drift_monitor"] == "churn-drift now tests against s3://b/churn/v2"
    [record] = verify_audit_log(tmp_path / "audit.jsonl")
    assert record["what"]["drift_monitor"] == decided["drift_monitor"]


def test_a_cluster_is_found_only_when_one_is_configured(no_cluster, tmp_path, monkeypatch):
    assert not kubeconfig_available()
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\n")
    assert kubeconfig_available(str(config))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert kubeconfig_available()


def test_flowline_deploy_without_a_cluster_writes_the_manifest_and_promote_edits_it(
    no_cluster, churn_package_for_deploy, tmp_path, capsys
):
    from flowline.pipelines.cli import main

    from flowline.audit import verify

    manifest, log = tmp_path / "churn.yaml", tmp_path / "audit.jsonl"
    assert main(["deploy", str(churn_package_for_deploy), "-o", str(manifest), "--storage-uri", "s3://b/churn/v9",
                 "--audit-log", str(log)]) == 0
    written = yaml.safe_load(manifest.read_text())
    assert written["spec"]["predictor"]["model"]["storageUri"] == "s3://b/churn/v9"
    assert written["metadata"]["namespace"] == "flowline"
    assert main(["canary", "rollback", "--manifest", str(manifest), "--audit-log", str(log)]) == 0
    assert yaml.safe_load(manifest.read_text())["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert main(["canary", "promote", "--manifest", str(manifest), "--audit-log", str(log)]) == 0
    assert "canaryTrafficPercent" not in yaml.safe_load(manifest.read_text())["spec"]["predictor"]
    assert "was rolled back (canaryTrafficPercent 0): this promotion gives all traffic to the canary it rolled " \
           "back" in capsys.readouterr().err
    assert main(["canary", "promote", "churn", "--audit-log", str(log)]) == 1  # no kubeconfig, no manifest: a clear refusal
    # Who did what, in order, on one unbroken chain; the refused promotion is not recorded.
    records = verify(log)
    assert [r["action"] for r in records] == ["deployment", "rollback", "promotion"]
    assert records[0]["what"]["storage_uri"] == "s3://b/churn/v9" and records[0]["what"]["action"]
    # A change to a manifest names the package it serves and the traffic it moved.
    assert {k: v for k, v in records[1]["what"].items() if k != "manifest"} == {
        "storage_uri": "s3://b/churn/v9", "canary_traffic_percent": {"before": None, "after": 0}}
    assert records[2]["what"]["canary_traffic_percent"] == {"before": 0, "after": None}
    assert all(r["actor"] for r in records)


def deployable(folder: Path, gates_passed: bool = True, decision: str = "promote", evaluation: dict | None = None) \
        -> Path:
    """A minimal verified package: deploy reads only the manifest and the evaluation (the other files every
    package holds are there, empty)."""
    from flowline.package.format import REQUIRED_FILES, write_manifest

    package = folder / "package"
    (package / "model").mkdir(parents=True)
    for name in REQUIRED_FILES:
        (package / name).write_text("{}")
    (package / "evaluation.json").write_text(json.dumps({
        "gates_passed": gates_passed,
        "champion_challenger": {"decision": decision, "reason": "significantly better" if decision == "promote"
                                else "not significantly better at alpha 0.05"}, **(evaluation or {})}))
    write_manifest(package, "churn")
    return package


@pytest.fixture
def churn_package_for_deploy(tmp_path) -> Path:
    return deployable(tmp_path)


FAILED_AUPRC = {"gates": {"auprc": {"value": 0.5, "min": 0.55, "max": None, "passed": False},
                          "roc_auc": {"value": 0.85, "min": 0.8, "max": None, "passed": True}}}
FAILED_FAIRNESS = {"gates": {"roc_auc": {"value": 0.85, "min": 0.8, "max": None, "passed": True}},
                   "fairness": {"attributes": {"SeniorCitizen": {"gate": "fail"}, "gender": {"gate": "pass"}}}}


@pytest.mark.parametrize(("gates_passed", "decision", "evaluation", "said"), [
    (False, "keep", {}, "not applied: the package failed its gates"),
    # the dashboard's deploy step said "quality gates (or fairness gates)" whichever failed
    (False, "keep", FAILED_AUPRC, "not applied: the package failed its quality gates (auprc)"),
    (False, "keep", FAILED_FAIRNESS, "not applied: the package failed its fairness gates (SeniorCitizen)"),
    (True, "keep", {}, "the champion stays (not significantly better"),
])
def test_a_package_that_should_not_serve_is_never_applied(tmp_path, gates_passed, decision, evaluation, said):
    from flowline.deployment import deploy_package

    api = StandInApiServer(serving(None))
    package = deployable(tmp_path, gates_passed, decision, evaluation)
    outcome = deploy_package(str(package), "s3://b/churn/v2", "flowline", str(tmp_path / "isvc.yaml"),
                             apply_to_cluster=True, kubeconfig=api.kubeconfig(tmp_path),
                             audit_log=str(tmp_path / "audit.jsonl"))
    assert outcome["applied"] is False and said in outcome["action"]
    assert api.requests == [] and (tmp_path / "isvc.yaml").is_file()
    [record] = verify_audit_log(tmp_path / "audit.jsonl")  # the step records what it did, applied or not
    assert record["action"] == "deployment" and record["what"]["applied"] is False
    assert record["what"]["gates_passed"] is gates_passed and record["what"]["decision"] == decision


def test_deploy_applies_with_a_warning_when_it_cannot_check_object_storage(no_cluster, tmp_path, monkeypatch, capsys):
    from flowline import storage
    from flowline.pipelines.cli import main

    for name in (storage.ENDPOINT_ENV, storage.ACCESS_KEY_ENV, storage.SECRET_KEY_ENV, storage.SECRET_ENV):
        monkeypatch.delenv(name, raising=False)
    api = StandInApiServer(cluster_with(drift_monitor("s3://flowline-models/churn/current")))
    assert main(["deploy", str(deployable(tmp_path)), "-o", str(tmp_path / "isvc.yaml"), "--storage-uri",
                 "s3://b/churn/v1", "--kubeconfig", api.kubeconfig(tmp_path)]) == 0
    assert ("warning: deploy: cannot check that the package is at s3://b/churn/v1: object storage is not configured"
            in capsys.readouterr().err)
    assert ("POST", ISVC_PATH) in [(r["method"], r["path"]) for r in api.requests]


def refusing_canary_logs(folder: Path) -> list[str]:
    """A prediction log and outcomes where every canary request failed: analyze decides to roll back."""
    served = [{"request_id": f"{arm}-{n}", "arm": arm, "error": "BadRequest" if arm == "canary" else None,
               "seconds": 0.01} for arm in ("champion", "canary") for n in range(250)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in served))
    (folder / "outcomes.jsonl").write_text("".join(json.dumps({"request_id": f"champion-{n}", "outcome": n % 2}) + "\n"
                                                   for n in range(250)))
    return ["--predictions", str(folder / "predictions.jsonl"), "--outcomes", str(folder / "outcomes.jsonl")]


CLUSTER_COMMANDS = {
    "deploy": lambda folder: ["deploy", str(deployable(folder)), "-o", str(folder / "isvc.yaml"),
                              "--storage-uri", "pvc://models/churn/v1"],  # a place deploy does not check
    "canary promote": lambda folder: ["canary", "promote", "churn"],
    "canary analyze --apply": lambda folder: ["canary", "analyze", *refusing_canary_logs(folder), "--name", "churn",
                                              "--apply"],
}


@pytest.mark.parametrize("command", CLUSTER_COMMANDS)
@pytest.mark.parametrize(("status", "said"), [
    (None, "cannot reach the Kubernetes API at {url}: connection refused (is the address right, and the port "
           "forwarded?)"),
    (401, "the Kubernetes API at {url} refused the request (401 Unauthorized): check the kubeconfig's credentials"),
    (403, "the Kubernetes API at {url} refused the request (403 Forbidden): check the kubeconfig's credentials"),
])
def test_a_cluster_that_cannot_be_reached_or_refuses_is_one_line_and_nothing_is_recorded(
        command, status, said, no_cluster, tmp_path, capsys):
    from flowline.pipelines.cli import main

    url, config, _api = unreachable_or_refusing(status, tmp_path)
    log = tmp_path / "audit.jsonl"
    assert main([*CLUSTER_COMMANDS[command](tmp_path), "--kubeconfig", config, "--audit-log", str(log)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"flowline: {said.format(url=url)}") and err.count("\n") == 1
    assert not log.exists()  # nothing was done, so nothing is recorded
