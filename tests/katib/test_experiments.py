"""Katib Experiments: generated from the search spaces, valid against Katib's swagger, in sync with the files."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import average_precision_score

from flowline.components import DEFAULT_IMAGE
from flowline.contract import apply_contract
from flowline.features.feature_set import FeatureSet
from flowline.features.plan import default_plan
from flowline.splitting import split_frame
from flowline.models.families import TrainingData, fit_candidate, trial_score
from flowline.search_space import search_space
from flowline.katib import (
    GENERATED_HEADER,
    ExperimentError,
    build_experiment,
    built_in_experiments,
    katib_trials,
    to_manifest,
    trial_source,
    use_case_experiments,
)
from flowline.use_case_loader import load_use_case
from manifest_helpers import katib_errors, katib_wrapped, trial_args

# Where `flowline katib` writes the built-in experiments (the Makefile's `katib` target).
FOLDER = Path(__file__).parents[2] / "katib_experiments"

# Katib's StdOut collector's default filter (pkg/metricscollector/v1beta1/common: DefaultFilter).
KATIB_METRIC_LINE = re.compile(r"^([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)$")


def committed() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(FOLDER.glob("*.yaml"))}


def test_the_committed_yaml_is_what_the_spaces_generate():
    generated, left_out = built_in_experiments(DEFAULT_IMAGE)
    assert committed() == generated, "run `make katib` to regenerate katib_experiments/*.yaml"
    assert {"churn-xgboost-hpo.yaml", "churn-linear-hpo.yaml", "churn-forest-hpo.yaml",
            "churn-mlp-nas.yaml", "fraud-xgboost-hpo.yaml", "fraud-claims-xgboost-hpo.yaml"} <= set(committed())
    # CDNOW has no public URL (it ships inside a wheel): its trials could not download it.
    assert list(left_out) == ["clv"] and "cannot see" in left_out["clv"]
    assert all(path.read_text().startswith(GENERATED_HEADER) for path in FOLDER.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(committed()))
def test_every_experiment_is_valid_against_katibs_swagger(name):
    assert katib_errors(committed()[name]) == []


def test_the_validator_rejects_an_unknown_field_a_wrong_type_and_a_bad_job():
    experiment = committed()["churn-xgboost-hpo.yaml"]
    typo = {**experiment, "spec": {**experiment["spec"], "parallelTrials": 3}}
    assert any("parallelTrials" in e for e in katib_errors(typo))
    wrong = {**experiment, "spec": {**experiment["spec"], "maxTrialCount": "thirty"}}
    assert any("maxTrialCount" in e for e in katib_errors(wrong))
    job = experiment["spec"]["trialTemplate"]["trialSpec"]
    broken = json.loads(json.dumps(experiment))
    broken["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 7
    assert any("trialSpec" in e for e in katib_errors(broken)) and job["kind"] == "Job"


@pytest.mark.parametrize("name", sorted(committed()))
def test_parameters_match_the_space_and_reach_the_trial_command(name):
    spec = committed()[name]["spec"]
    labels = committed()[name]["metadata"]["labels"]
    family, use_case = labels["flowline.dev/family"], load_use_case(labels["flowline.dev/use-case"])
    space = search_space(family, "binary", use_case.tuning)
    # The fraud use cases tune the positive class's weight in the tree families; churn does not.
    assert ("scale_pos_weight" in [p.name for p in space.parameters]) == (
        use_case.tuning.class_weighting and family in ("xgboost", "forest", "lightgbm", "catboost"))
    assert [p["name"] for p in spec["parameters"]] == [p.name for p in space.parameters]
    assert [t["reference"] for t in spec["trialTemplate"]["trialParameters"]] == [p.name for p in space.parameters]
    args = trial_args(spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0])
    assert [a for a in args if "${trialParameters." in a] == [
        f"--{p.name}=${{trialParameters.{p.name}}}" for p in space.parameters]
    assert spec["algorithm"]["algorithmName"] == "tpe" and spec["earlyStopping"]["algorithmName"] == "medianstop"
    # Katib's tpe service refuses settings other than gamma, prior_weight, n_EI_candidates and random_state:
    # there is no way to seed an Experiment with the portfolio's points (katib_experiments/README.md).
    assert spec["algorithm"]["algorithmSettings"] == [{"name": "random_state", "value": str(use_case.tuning.seed)}]
    assert spec["parallelTrialCount"] == 3 and spec["maxTrialCount"] == use_case.tuning.families[family]
    assert spec["metricsCollectorSpec"]["collector"]["kind"] == "StdOut"
    objective = f"valid_{use_case.tuning.metric}"
    assert spec["objective"] == {
        "type": "maximize", "objectiveMetricName": objective, "additionalMetricNames": ["iterations"],
        "metricStrategies": [{"name": objective, "value": "latest"}, {"name": "iterations", "value": "latest"}]}


def test_the_trial_container_is_hardened_and_reads_a_url():
    for manifest in committed().values():
        pod = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]} and container["resources"]["limits"]["memory"] == "4Gi"
        args = trial_args(container)
        source = args[args.index("--source") + 1]
        assert source.startswith("https://")


def test_a_use_case_on_a_local_file_says_trials_need_a_url(toy_use_case):
    with pytest.raises(ExperimentError, match="cannot see. Upload it"):
        trial_source(toy_use_case, "")
    assert trial_source(toy_use_case, "https://example.org/x.csv") == "https://example.org/x.csv"


def test_a_use_case_that_is_not_built_in_travels_inline(toy_use_case):
    manifest = to_manifest(build_experiment(toy_use_case, "linear", 5, "img:1", "ns", source="https://e.org/x.csv",
                                            feature_plan={"encodings": {}, "transforms": {}, "generated": []}))
    args = trial_args(manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0])
    assert json.loads(args[args.index("--use-case-json") + 1]) == json.loads(toy_use_case.model_dump_json())
    assert json.loads(args[args.index("--feature-plan") + 1])["generated"] == []
    assert manifest["spec"]["parallelTrialCount"] == 3 and katib_errors(manifest) == []


def test_a_trial_runs_as_katibs_webhook_rewrites_it_with_json_and_shell_characters_in_its_arguments(
        toy_use_case, tmp_path):
    """Katib's StdOut collector runs the trial as one unquoted `sh -c` line: the inline use case, the feature
    plan and a source with `&` and brackets in it must reach the trial as they were given."""
    source = toy_csv(tmp_path).rename(tmp_path / "toy & (copy) [1].csv")
    parts = split_frame(apply_contract(pd.read_csv(source, dtype=str), toy_use_case).kept, toy_use_case)
    plan = default_plan(parts["train"], toy_use_case).to_dict()
    manifest = to_manifest(build_experiment(toy_use_case, "linear", 5, "img:1", "ns", source=str(source),
                                            feature_plan=plan))
    container = manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assignment = {"C": "0.5", "l1_ratio": "1.0", "class_weight": "balanced"}
    for name, value in assignment.items():  # as Katib substitutes the suggestion into the trial spec
        container["args"] = [arg.replace(f"${{trialParameters.{name}}}", value) for arg in container["args"]]
    args = trial_args(container)
    assert json.loads(args[args.index("--feature-plan") + 1]) == plan
    metrics = tmp_path / "katib"
    metrics.mkdir()
    python = Path(sys.executable).parent  # `python` on the PATH, as in the image
    ran = subprocess.run(katib_wrapped(container, str(metrics)), capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PATH": f"{python}:{os.environ['PATH']}"})
    lines = (metrics / "metrics.log").read_text().splitlines()
    assert ran.returncode == 0, (ran.stdout, lines)
    assert lines[-1] == "iterations=1" and lines[-2].startswith("valid_roc_auc=")
    # The log takes stderr too (its progress line); the collector reads only the lines its filter matches.
    assert [line for line in lines if KATIB_METRIC_LINE.match(line)] == lines[-2:], lines
    assert [path.read_text() for path in metrics.glob("*.pid")] == ["completed\n"]


def run_trial(args: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "flowline.katib_experiments.trial", *args],
                          capture_output=True, text=True, check=True, timeout=300)
    return done.stdout.splitlines()


def toy_csv(folder: Path) -> Path:
    rng = np.random.default_rng(4)
    age = rng.integers(18, 80, 800)
    plan = rng.choice(["basic", "pro"], 800)
    signal = 0.08 * (age - 50) + 1.5 * (plan == "pro") + rng.normal(0, 1, 800)
    path = folder / "toy.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(800)], "age": age, "income": rng.normal(3000, 500, 800), "plan": plan,
                  "label": np.where(signal > 0.5, "yes", "no")}).to_csv(path, index=False)
    return path


def test_the_trial_prints_only_katib_metric_lines_and_its_score_is_the_in_process_one(toy_use_case, tmp_path):
    source = toy_csv(tmp_path)
    frame = pd.read_csv(source, dtype=str)

    parts = split_frame(apply_contract(frame, toy_use_case).kept, toy_use_case)
    plan = default_plan(parts["train"], toy_use_case)
    params = {"eta": 0.1, "max_depth": 3, "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 0.9,
              "lambda": 1.0, "alpha": 0.01}
    lines = run_trial(["--use-case-json", toy_use_case.model_dump_json(), "--family", "xgboost",
                       "--source", str(source), "--feature-plan", json.dumps(plan.to_dict()),
                       *(f"--{k}={v}" for k, v in params.items())])
    assert lines and all(KATIB_METRIC_LINE.match(line) for line in lines)
    names = [line.split("=")[0] for line in lines]
    assert names[-1] == "iterations" and set(names[:-1]) == {"valid_roc_auc"} and len(names) >= 3
    feature_set = FeatureSet.fit(parts["train"], toy_use_case, plan)
    data = TrainingData.from_splits(feature_set, parts["train"], parts["valid"], "binary")
    score, iterations = trial_score("xgboost", params, data, toy_use_case.tuning)
    assert float(lines[-2].split("=")[1]) == pytest.approx(score, abs=1e-6)
    assert int(lines[-1].split("=")[1]) == iterations


def test_the_trial_searches_a_plan_itself_and_refuses_a_parameter_outside_the_space(toy_use_case, tmp_path):
    source = toy_csv(tmp_path)
    base = ["--use-case-json", toy_use_case.model_dump_json(), "--family", "linear", "--source", str(source),
            "--l1_ratio=1.0", "--class_weight=balanced"]
    lines = run_trial([*base, "--C=0.5"])
    assert lines[-1] == "iterations=1" and lines[-2].startswith("valid_roc_auc=")
    refused = subprocess.run([sys.executable, "-m", "flowline.katib_experiments.trial", *base, "--C=50"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "C=50.0 is outside [0.001, 10.0]" in refused.stderr


def test_a_lightgbm_experiment_is_written_only_for_a_use_case_that_lists_it(churn, tmp_path):
    from flowline.pipelines.cli import main

    # Not a default family: of the built-in use cases only fraud-claims lists it.
    assert [name for name in committed() if "lightgbm" in name] == ["fraud-claims-lightgbm-hpo.yaml"]
    assert [name for name in committed() if "catboost" in name] == ["fraud-claims-catboost-hpo.yaml"]  # nor this
    document = yaml.safe_load((Path(__file__).parents[2] / "pipelines" / "use_cases" / "churn.yaml").read_text())
    document["tuning"]["families"] = {"lightgbm": 30, "linear": 20}
    path = tmp_path / "churn-lightgbm.yaml"
    path.write_text(yaml.safe_dump(document))
    assert main(["katib", "--use-case", str(path), "-o", str(tmp_path / "out")]) == 0
    written = {p.name: yaml.safe_load(p.read_text()) for p in (tmp_path / "out").glob("*.yaml")}
    assert sorted(written) == ["churn-lightgbm-hpo.yaml", "churn-linear-hpo.yaml"]
    manifest = written["churn-lightgbm-hpo.yaml"]
    assert katib_errors(manifest) == [] and manifest["spec"]["maxTrialCount"] == 30
    space = search_space("lightgbm", "binary", churn.tuning)
    assert [p["name"] for p in manifest["spec"]["parameters"]] == [p.name for p in space.parameters]
    args = trial_args(manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0])
    assert args[args.index("--family") + 1] == "lightgbm"
    assert [a for a in args if "${trialParameters." in a] == [
        f"--{p.name}=${{trialParameters.{p.name}}}" for p in space.parameters]


@pytest.mark.parametrize("family, params", [
    ("lightgbm", {"learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 20, "feature_fraction": 0.9,
                  "bagging_fraction": 0.9, "lambda_l1": 0.01, "lambda_l2": 1.0}),
    ("catboost", {"learning_rate": 0.1, "depth": 4, "l2_leaf_reg": 3.0, "random_strength": 1.0,
                  "bagging_temperature": 1.0}),
])
def test_a_boosted_trial_searching_auprc_prints_that_objective_and_its_score_is_the_in_process_one(
        family, params, toy_use_case, tmp_path, capsys):
    from flowline.katib_experiments.trial import main

    auprc = toy_use_case.tuning.model_copy(update={"metric": "auprc"})
    toy_use_case = toy_use_case.model_copy(update={"tuning": auprc})
    objective = to_manifest(build_experiment(toy_use_case, family, 5, "img:1", "ns",
                                             source="https://e.org/x.csv"))["spec"]["objective"]
    assert objective["objectiveMetricName"] == "valid_auprc" and objective["type"] == "maximize"
    source = toy_csv(tmp_path)
    parts = split_frame(apply_contract(pd.read_csv(source, dtype=str), toy_use_case).kept, toy_use_case)
    plan = default_plan(parts["train"], toy_use_case)
    assert main(["--use-case-json", toy_use_case.model_dump_json(), "--family", family, "--source", str(source),
                 "--feature-plan", json.dumps(plan.to_dict()), *(f"--{k}={v}" for k, v in params.items())]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(KATIB_METRIC_LINE.match(line) for line in lines)
    names = [line.split("=")[0] for line in lines]
    assert names[-1] == "iterations" and set(names[:-1]) == {"valid_auprc"} and len(names) >= 3
    feature_set = FeatureSet.fit(parts["train"], toy_use_case, plan)
    data = TrainingData.from_splits(feature_set, parts["train"], parts["valid"], "binary")
    fitted = fit_candidate(family, params, data, toy_use_case.tuning)
    assert fitted.valid_score == pytest.approx(average_precision_score(data.y_valid, fitted.model.margin(data.x_valid)))
    score, iterations = trial_score(family, params, data, toy_use_case.tuning)
    assert float(lines[-2].split("=")[1]) == pytest.approx(score, abs=1e-6)
    assert int(lines[-1].split("=")[1]) == iterations


def test_a_time_budget_sizes_each_experiment_from_the_declared_trial_cost(churn):
    tuning = churn.tuning.model_copy(update={"time_budget": 300, "trial_seconds": 100, "parallel_trials": 2})
    # floor(300 / 100) = 3 waves of 2 trials, capped by each family's trials in tuning.families.
    assert {family: katib_trials(tuning, family) for family in tuning.families} == {
        "xgboost": 6, "linear": 6, "forest": 6, "mlp": 6}
    capped = tuning.model_copy(update={"families": {"xgboost": 4, "linear": 20}})
    assert [katib_trials(capped, family) for family in ("xgboost", "linear")] == [4, 6]
    short = tuning.model_copy(update={"time_budget": 30})  # less than one trial: one wave still runs
    assert katib_trials(short, "linear") == 2
    assert katib_trials(churn.tuning, "xgboost") == 30  # no time budget: the trials


def test_a_time_budgeted_experiment_is_valid_and_runs_its_trials_in_parallel(churn):
    tuning = churn.tuning.model_copy(update={"time_budget": 600, "trial_seconds": 120, "parallel_trials": 3})
    manifests = use_case_experiments(churn.model_copy(update={"tuning": tuning}), DEFAULT_IMAGE)
    assert sorted(manifests) == ["churn-forest-hpo.yaml", "churn-linear-hpo.yaml", "churn-mlp-nas.yaml",
                                 "churn-xgboost-hpo.yaml"]
    for name, manifest in manifests.items():
        assert katib_errors(manifest) == [], name
        # 5 waves of 3; forest's cap is 12, mlp's 16
        assert manifest["spec"]["maxTrialCount"] == {"churn-forest-hpo.yaml": 12}.get(name, 15), name
        assert manifest["spec"]["parallelTrialCount"] == 3


def test_trials_reading_a_public_url_are_warned_of_and_an_s3_source_is_used_as_given(tmp_path, capsys):
    """The shipped NetworkPolicies let trial pods reach object storage only."""
    from flowline.pipelines.cli import main

    assert main(["katib", "churn", "-o", str(tmp_path / "public")]) == 0
    assert "the trials read https://" in capsys.readouterr().err
    assert main(["katib", "churn", "--source", "s3://flowline-data/telco.csv", "-o", str(tmp_path / "s3")]) == 0
    assert "warning" not in capsys.readouterr().err
    manifest = yaml.safe_load((tmp_path / "s3" / "churn-xgboost-hpo.yaml").read_text())
    args = trial_args(manifest["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0])
    assert args[args.index("--source") + 1] == "s3://flowline-data/telco.csv"
    assert main(["katib", "clv", "--upload-data", "s3://nowhere/x", "--source", "s3://b/cdnow.txt",
                 "-o", str(tmp_path / "clv")]) == 0  # the option the refusal names exists: a remote source is used


def test_experiment_names_stay_within_katibs_40_characters(churn):
    from flowline.katib import EXPERIMENT_NAME_MAX, experiment_name
    from flowline.use_case import FAMILIES

    longest = churn.model_copy(update={"name": "creditcard-fraud-sample-of-the-eu-bank-ab"})  # 41: the longest allowed
    other = churn.model_copy(update={"name": "creditcard-fraud-sample-of-the-eu-bank-cd"})
    for family in FAMILIES:
        names = [experiment_name(case, family, suffix="85940f") for case in (longest, other)]
        assert all(len(name) <= EXPERIMENT_NAME_MAX and name[-1].isalnum() for name in names), names
        assert names[0] != names[1]  # cut alike, told apart by the hash of the whole name
    assert experiment_name(churn, "lightgbm", suffix="85940f") == "churn-lightgbm-hpo-85940f"  # short names as they were

