"""The compiled pipeline: KFP IR YAML that the kfp SDK loads back, with images, resources and retries."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import components

from flowline import __version__, audit, storage
from flowline.package import signing
from flowline.pipelines.cli import main
from flowline.pipelines.template import NOT_CACHED, RESOURCES
from flowline.use_case import FAMILIES
from flowline.use_case_loader import load_use_case
from pipeline_steps import STEPS



EXIT_HANDLER = "exit-handler-1"
TELCO_IN_S3 = "s3://flowline-data/telco/telco_customer_churn.csv"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compiled") / "churn.yaml"
    assert main(["compile", "churn", "-o", str(path), "--source", TELCO_IN_S3]) == 0
    return path


def pipeline_spec(path: Path) -> dict:
    """The compiled file's first document; the second is the platform (Kubernetes) spec."""
    return next(yaml.safe_load_all(path.read_text()))


def platform_spec(path: Path) -> dict:
    return list(yaml.safe_load_all(path.read_text()))[1]["platforms"]["kubernetes"]


def steps_of(spec: dict) -> dict:
    """The pipeline's steps, inside the exit handler's group."""
    return spec["components"][f"comp-{EXIT_HANDLER}"]["dag"]["tasks"]


def test_the_kfp_sdk_loads_it_back(compiled: Path):
    loaded = components.load_component_from_file(str(compiled))
    assert loaded.name == "flowline-churn"
    assert set(loaded.component_spec.inputs) == {"source", "trials", "tuning_backend", "champion", "namespace",
                                                 "canary_percent", "audit_log", "broker_url"}
    assert sorted(loaded.pipeline_spec.root.dag.tasks) == [EXIT_HANDLER, "run-outcome"]


def test_an_exit_handler_records_the_outcome_after_the_steps_whatever_it_was(compiled: Path):
    spec = pipeline_spec(compiled)
    assert sorted(steps_of(spec)) == sorted(STEPS)
    outcome = spec["root"]["dag"]["tasks"]["run-outcome"]
    assert outcome["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"  # runs after failures too
    assert outcome["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": EXIT_HANDLER}}
    assert outcome["inputs"]["parameters"]["audit_log"] == {"componentInputParameter": "audit_log"}
    # the KFP run's id, which the package's lineage names: the final status names the Argo workflow instead
    assert outcome["inputs"]["parameters"]["run_id"] == {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}


def test_every_task_has_resources_a_retry_policy_caching_and_the_project_image(compiled: Path):
    spec = pipeline_spec(compiled)
    executors = spec["deploymentSpec"]["executors"]
    tasks = {**steps_of(spec), "run-outcome": spec["root"]["dag"]["tasks"]["run-outcome"]}
    assert len(tasks) == len(STEPS) + 1
    for name, task in tasks.items():
        assert task["retryPolicy"]["maxRetryCount"] == 2
        assert task["retryPolicy"]["backoffDuration"] == "30s" and task["retryPolicy"]["backoffFactor"] == 2.0
        # KFP writes no enableCache for a task that must not be cached
        assert task["cachingOptions"].get("enableCache", False) == (name not in NOT_CACHED), name
        container = executors[task["componentRef"]["name"].replace("comp-", "exec-")]["container"]
        assert container["image"] == f"ghcr.io/flowline-ml/flowline:{__version__}"
        family = task["inputs"]["parameters"].get("family", {}).get("runtimeValue", {}).get("constant")
        searched = (family or "mlp") in load_use_case("churn").tuning.families
        step = name if name == "run-outcome" else name.split("-")[0]
        # churn searches with auto, Katib on a cluster: its search steps wait for the trials' pods
        cpu, _ = RESOURCES[step if step not in ("tune", "nas") else "katib-wait" if searched else "skipped"]
        assert container["resources"]["cpuRequest"] == float(cpu.removesuffix("m")) / (1000 if "m" in cpu else 1)
        assert container["resources"]["memoryRequest"] > 0
        if not searched:  # churn searches neither LightGBM nor CatBoost: their tasks ask for little
            assert step == "tune" and family in ("lightgbm", "catboost") and cpu == "100m"
        elif step in ("tune", "nas"):  # six waiting pods had reserved 12 CPUs and 24 GiB on fraud-claims
            assert cpu == "250m"
        assert "pip install" not in " ".join(container["command"])  # the image already holds kfp and flowline


def test_a_use_case_searching_in_its_own_pods_asks_for_the_cores_it_searches_with(tmp_path: Path):
    from flowline.pipelines.template import compile_pipeline

    churn = load_use_case("churn")
    optuna = churn.model_copy(update={"tuning": churn.tuning.model_copy(update={"backend": "optuna"})})
    compile_pipeline(optuna, str(tmp_path / "optuna.yaml"), source="s3://data/telco.csv")
    spec = pipeline_spec(tmp_path / "optuna.yaml")
    executors = spec["deploymentSpec"]["executors"]
    (task,) = [task for task in steps_of(spec).values()
               if task["inputs"]["parameters"].get("family", {}).get("runtimeValue", {}).get("constant") == "xgboost"]
    resources = executors[task["componentRef"]["name"].replace("comp-", "exec-")]["container"]["resources"]
    assert resources["cpuRequest"] == float(RESOURCES["tune"][0])


def test_the_image_is_configurable(tmp_path: Path):
    path = tmp_path / "churn.yaml"
    subprocess.run(
        [sys.executable, "-m", "flowline.pipelines.cli", "compile", "churn", "-o", str(path),
         "--image", "registry.example/flowline:rc1", "--source", TELCO_IN_S3],
        check=True, capture_output=True,
    )
    images = {e["container"]["image"] for e in pipeline_spec(path)["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/flowline:rc1"}


def test_each_compile_in_one_process_uses_the_image_it_is_given(tmp_path: Path):
    """The image is an argument: a second compile in the same process (components already imported and
    made once) gets its own image on every executor and as the tune and nas steps' trial image."""
    for image in ("registry.example/flowline:one", "registry.example/flowline:two"):
        path = tmp_path / f"{image.rsplit(':', 1)[1]}.yaml"
        assert main(["compile", "churn", "-o", str(path), "--image", image, "--source", TELCO_IN_S3]) == 0
        spec = pipeline_spec(path)
        images = [e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()]
        assert len(images) == len(STEPS) + 1 and set(images) == {image}
        tasks = steps_of(spec)
        for name in ("tune", "tune-2", "tune-3", "tune-4", "tune-5", "nas"):
            assert tasks[name]["inputs"]["parameters"]["image"]["runtimeValue"]["constant"] == image, name


def test_the_image_defaults_to_flowline_image_read_when_the_command_line_is_parsed(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("FLOWLINE_IMAGE", "registry.example/flowline:from-env")
    path = tmp_path / "churn.yaml"
    assert main(["compile", "churn", "-o", str(path), "--source", TELCO_IN_S3]) == 0
    images = {e["container"]["image"] for e in pipeline_spec(path)["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/flowline:from-env"}
    # A notebook's compile_pipeline() builds what `flowline compile` does in the same environment.
    from flowline.pipelines.template import compile_pipeline
    from flowline.use_case_loader import load_use_case

    compile_pipeline(load_use_case("churn"), str(tmp_path / "python.yaml"), source=TELCO_IN_S3)
    spec = pipeline_spec(tmp_path / "python.yaml")
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == images
    assert steps_of(spec)["nas"]["inputs"]["parameters"]["image"]["runtimeValue"]["constant"] == \
        "registry.example/flowline:from-env"  # the Katib trials' image too


def test_the_churn_pipeline_is_the_template_applied_to_churn_yaml():
    from flowline.pipelines.churn import churn_pipeline

    assert churn_pipeline.name == "flowline-churn"
    assert sorted(churn_pipeline.pipeline_spec.root.dag.tasks) == sorted(STEPS)


def test_naming_both_or_neither_use_case_is_a_usage_error(capsys):
    for argv in (["compile", "-o", "x.yaml"], ["run", "churn", "--use-case", "my.yaml"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
        assert "exactly one" in capsys.readouterr().err


def test_a_time_budget_makes_one_search_step_that_feeds_train(tmp_path: Path):
    document = yaml.safe_load((Path(__file__).parents[1] / "pipelines" / "use_cases" / "churn.yaml").read_text())
    document["tuning"]["time_budget"] = 120
    (tmp_path / "churn-budget.yaml").write_text(yaml.safe_dump(document))
    path = tmp_path / "compiled.yaml"
    assert main(["compile", "--use-case", str(tmp_path / "churn-budget.yaml"), "-o", str(path),
                 "--source", TELCO_IN_S3]) == 0
    spec = pipeline_spec(path)
    tasks = steps_of(spec)
    assert "search" in tasks and not {"tune", "tune-2", "nas"} & set(tasks)
    searches = tasks["train"]["inputs"]["artifacts"]
    assert {family: (searches[f"{family}_search"]["taskOutputArtifact"]["producerTask"],
                     searches[f"{family}_search"]["taskOutputArtifact"]["outputArtifactKey"]) for family in
            FAMILIES} == {family: ("search", family) for family in FAMILIES}
    outputs = spec["components"][tasks["search"]["componentRef"]["name"]]["outputDefinitions"]["artifacts"]
    assert outputs["budget_report"]["artifactType"]["schemaTitle"] == "system.Markdown"


def test_one_tune_step_per_family_and_nas_feed_train(compiled: Path):
    tasks = steps_of(pipeline_spec(compiled))
    families = {tasks[name]["inputs"]["parameters"]["family"]["runtimeValue"]["constant"] for name in
                ("tune", "tune-2", "tune-3", "tune-4", "tune-5")}
    assert families == {"xgboost", "linear", "forest", "lightgbm", "catboost"}
    assert {task["taskInfo"]["name"] for task in tasks.values()} >= {"tune-xgboost", "tune-linear", "tune-forest",
                                                                      "tune-lightgbm", "tune-catboost", "nas"}
    searches = tasks["train"]["inputs"]["artifacts"]
    assert {searches[f"{family}_search"]["taskOutputArtifact"]["producerTask"] for family in
            FAMILIES} == {"tune", "tune-2", "tune-3", "tune-4", "tune-5", "nas"}
    evaluate = tasks["evaluate"]["inputs"]
    assert evaluate["artifacts"]["holdout"]["taskOutputArtifact"]["producerTask"] == "train"
    # inside the exit handler's group, a pipeline input arrives as a channel of that name
    assert evaluate["parameters"]["champion"]["componentInputParameter"] == "pipelinechannel--champion"


@pytest.mark.parametrize("module, attribute, name", [
    ("clv", "clv_pipeline", "clv"), ("fraud", "fraud_pipeline", "fraud"),
    ("fraud", "fraud_claims_pipeline", "fraud-claims")])
def test_the_clv_and_fraud_pipelines_come_from_the_same_template(module, attribute, name):
    import importlib

    pipeline = getattr(importlib.import_module(f"flowline.pipelines.{module}"), attribute)
    assert pipeline.name == f"flowline-{name}"
    # A transaction log gains the customer-rows step; a regression is evaluated without ClassificationMetrics
    # (an empty panel in the dashboard); every other step is the same.
    expected = STEPS[:1] + ["customer-rows"] + STEPS[1:] if name == "clv" else STEPS
    evaluate = "evaluate-regression" if name == "clv" else "evaluate"
    tasks = pipeline.pipeline_spec.root.dag.tasks
    assert sorted(tasks) == sorted(evaluate if step == "evaluate" else step for step in expected)
    assert tasks[evaluate].task_info.name == "evaluate"  # as the dashboard shows it
    outputs = pipeline.pipeline_spec.components[tasks[evaluate].component_ref.name].output_definitions.artifacts
    assert {"metrics", "report", "evaluation"} <= set(outputs)
    assert ("classification_metrics" in outputs) == (name != "clv")


def test_every_task_gets_the_object_store_credentials_and_audit_writers_the_key_from_secrets(compiled: Path):
    executors = pipeline_spec(compiled)["deploymentSpec"]["executors"]
    configs = platform_spec(compiled)["deploymentSpec"]["executors"]
    assert set(configs) == set(executors)  # every step and the exit handler's task
    for name, config in configs.items():
        secrets = {secret["secretName"]: {(m["secretKey"], m["envVar"]) for m in secret["keyToEnv"]}
                   for secret in config["secretAsEnv"]}
        assert secrets[storage.POD_SECRET] == {
            (key, key) for key in (storage.ENDPOINT_ENV, storage.ACCESS_KEY_ENV, storage.SECRET_KEY_ENV)}, name
        # The steps that write audit records or sign and verify packages hold those keys; no other step does.
        writes_audit, handles_packages = name in ("exec-deploy", "exec-run-outcome"), name in ("exec-package", "exec-deploy")
        assert secrets.get(audit.POD_SECRET) == ({(audit.KEY_ENV, audit.KEY_ENV)} if writes_audit else None), name
        assert secrets.get(signing.POD_SECRET) == (
            {(signing.POD_SECRET_KEY, signing.KEY_ENV)} if handles_packages else None), name


def test_the_compiled_pipeline_reads_remote_data_and_bakes_in_no_local_path(compiled: Path, data_home):
    text = compiled.read_text()
    assert str(data_home) not in text and '"dataset":null' in text
    assert f'"path":"{TELCO_IN_S3}"' in text


def test_data_only_on_this_machine_is_refused_with_the_way_out(tmp_path: Path, capsys):
    # A registered dataset too: pods reach the object store, not the dataset's public URL.
    for name, dataset in (("clv", "cdnow_master"), ("churn", "telco_customer_churn")):
        assert main(["compile", name, "-o", str(tmp_path / f"{name}.yaml")]) == 1
        error = capsys.readouterr().err
        assert f"registered dataset {dataset!r}" in error and "cannot see" in error and "--upload-data s3://" in error
    assert main(["compile", "churn", "-o", str(tmp_path / "x.yaml"), "--source", str(tmp_path / "local.csv")]) == 1
    assert "is a local path" in capsys.readouterr().err
    assert main(["compile", "churn", "-o", str(tmp_path / "x.yaml"), "--source", "ftp://host/telco.csv"]) == 1
    assert "a cluster run reads s3://, http:// or https:// sources only" in capsys.readouterr().err
    assert not any(tmp_path.glob("*.yaml"))


@pytest.mark.xdist_group("s3")
def test_upload_data_puts_the_file_in_object_storage_and_compiles_against_it(s3_bucket, data_home, tmp_path: Path,
                                                                             capsys):
    path = tmp_path / "clv.yaml"
    assert main(["compile", "clv", "-o", str(path), "--upload-data", f"s3://{s3_bucket}/datasets"]) == 0
    uploaded = f"s3://{s3_bucket}/datasets/cdnow_master.txt"
    assert f"uploaded {data_home / 'cdnow_master.txt'} to {uploaded}" in capsys.readouterr().out
    assert storage.read_bytes(uploaded) == (data_home / "cdnow_master.txt").read_bytes()
    text = path.read_text()
    assert f'"path":"{uploaded}"' in text and str(data_home) not in text


def test_the_batch_pipeline_is_one_scoring_step_with_its_inputs_keys_and_no_cache(tmp_path: Path, capsys):
    path = tmp_path / "churn-batch.yaml"
    assert main(["compile", "churn", "--batch", "-o", str(path)]) == 0  # the input is a run parameter: no --source
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "flowline-churn-batch"
    assert set(loaded.component_spec.inputs) == {"package_uri", "input_uri", "as_of", "audit_log"}
    assert set(loaded.component_spec.outputs) == {"scores", "quarantine"}
    spec = pipeline_spec(path)
    (name, task), = spec["root"]["dag"]["tasks"].items()
    assert name == "score" and not task["cachingOptions"].get("enableCache", False)  # the input may change
    assert task["retryPolicy"]["maxRetryCount"] == 2
    assert set(spec["components"]["comp-score"]["outputDefinitions"]["artifacts"]) == {
        "scores", "quarantine", "metrics", "summary"}
    (config,) = platform_spec(path)["deploymentSpec"]["executors"].values()
    secrets = {secret["secretName"] for secret in config["secretAsEnv"]}
    assert secrets == {storage.POD_SECRET, audit.POD_SECRET, signing.POD_SECRET}  # reads, verifies, records
    with pytest.raises(SystemExit) as refused:
        main(["compile", "churn", "--batch", "-o", str(tmp_path / "other.yaml"), "--source", TELCO_IN_S3])
    assert refused.value.code == 2 and "input is a run parameter" in capsys.readouterr().err


def test_every_pipeline_input_is_described_in_the_run_form(tmp_path):
    """The dashboard's run form and kfp.Client show each input's description, from the pipeline's Args."""
    from flowline.pipelines.template import compile_pipeline
    from flowline.use_case_loader import load_use_case

    compile_pipeline(load_use_case("churn"), str(tmp_path / "churn.yaml"), source="s3://data/telco.csv")
    spec = next(yaml.safe_load_all((tmp_path / "churn.yaml").read_text()))
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {"source", "trials", "tuning_backend", "champion", "namespace", "canary_percent",
                           "audit_log", "broker_url"}
    assert all(len(parameter.get("description", "")) > 20 for parameter in inputs.values()), inputs
    assert inputs["trials"]["description"].startswith("trials per family")
    # the batch-scoring pipeline's too (its run form showed four bare names)
    assert main(["compile", "churn", "--batch", "-o", str(tmp_path / "batch.yaml")]) == 0
    batch = next(yaml.safe_load_all((tmp_path / "batch.yaml").read_text()))["root"]["inputDefinitions"]["parameters"]
    assert set(batch) == {"package_uri", "input_uri", "as_of", "audit_log"}
    assert all(len(parameter.get("description", "")) > 20 for parameter in batch.values()), batch
