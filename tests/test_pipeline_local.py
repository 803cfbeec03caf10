"""Whole pipelines through kfp.local's SubprocessRunner, driven by the `flowline` command."""

import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import readme_examples
import yaml
from html_checks import assert_renders_as_a_page, assert_valid_html, loaded_image_widths

from flowline.audit import verify as verify_audit_log
from flowline.code_version import code_version
from flowline.package.format import verify
from flowline.datasets import REGISTRY
from flowline.inference_services.local_server import running_server
from flowline.pipelines.cli import EXIT_ERROR, main
from flowline.use_case_loader import USE_CASES_DIR, load_use_case
from pipeline_steps import SHOWN, STEPS

pytestmark = pytest.mark.pipeline


def checkout_head() -> str:
    return subprocess.run(["git", "-C", str(Path(__file__).parents[1]), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_churn_runs_end_to_end_to_a_verified_package(data_home, churn, chromium, tmp_path: Path, capsys):
    summary_path = tmp_path / "summary.json"
    code = main(["run", "churn", "--runs-dir", str(tmp_path / "runs"), "--summary", str(summary_path)])
    shown = capsys.readouterr().out
    assert code == 0, shown
    summary = json.loads(summary_path.read_text())
    assert summary["use_case"] == "churn"
    # the run folder keeps its own copy, from which `flowline open` lists the reports
    assert json.loads((Path(summary["run_dir"]) / "summary.json").read_text())["reports"] == summary["reports"]
    # Acceptance: the fixed split, the default budget.
    assert summary["metrics"]["roc_auc"] >= 0.84
    assert 0.5 < summary["metrics"]["auprc"] < 1
    assert summary["gates_passed"] and set(summary["gates"]) == {"roc_auc", "auprc"}
    # The dashboard's runs list and Compare view: every step is green whatever the gates say, so Metrics say it.
    outputs = {task.parent.name: json.loads(task.read_text())["artifacts"]
               for task in Path(summary["run_dir"]).glob("*/*/executor_output.json")}

    def shown_metrics(task: str, output: str = "metrics") -> dict:
        return {name: value for artifact in outputs[task][output]["artifacts"] for name, value in artifact["metadata"].items()}

    assert (shown_metrics("evaluate")["quality_gates_passed"], shown_metrics("evaluate")["promoted_before_fairness"]) \
        == (1.0, 1.0)
    assert (shown_metrics("bias")["gates_passed"], shown_metrics("bias")["promoted"]) == (1.0, 1.0)  # after every gate
    assert shown_metrics("bias")["fairness_passed"] == 1.0
    served = {name: value for name, value in shown_metrics("bias").items() if name.startswith("served.test.")}
    assert shown_metrics("bias")["mitigated"] == 1.0 and 0.5 < served["served.test.recall"] <= 1  # churn's per-group
    assert set(served) >= {"served.test.expected_cost_per_1000", "served.test.selection_rate"}
    # every bias gap says where it was measured (unprefixed, evaluate's are test values, and bias's were out of fold)
    gaps = [name for name in shown_metrics("bias") if name.endswith("equalized_odds_difference")]
    assert sorted(gaps) == ["out_of_fold.SeniorCitizen.equalized_odds_difference",
                            "out_of_fold.gender.equalized_odds_difference",
                            "test.SeniorCitizen.equalized_odds_difference", "test.gender.equalized_odds_difference"]
    # the served decisions' confusion matrix, beside evaluate's single-threshold one: it adds up to the test rows
    matrix = outputs["bias"]["served_decisions"]["artifacts"][0]["metadata"]["confusionMatrix"]["rows"]
    test_rows = json.loads((Path(summary["package"]) / "evaluation.json").read_text())["test_rows"]
    assert sum(sum(row["row"]) for row in matrix) == test_rows
    # train's keys name the metric, as the tune steps' do
    selection = shown_metrics("train", "selection_metrics")
    assert 0.8 < selection["valid_roc_auc_xgboost"] < 1 and 0.8 < selection["held_out_roc_auc_linear"] < 1
    assert summary["rows"] == {"rows_in": 7043, "rows_kept": 7043, "rows_quarantined": 0}
    assert summary["wall_seconds"] > 0
    manifest = verify(summary["package"])
    assert manifest["version"] == summary["package_version"]
    lineage = json.loads((Path(summary["package"]) / "lineage.json").read_text())
    assert lineage["dataset"]["source_sha256"] == REGISTRY["telco_customer_churn"].sha256
    fitted = np.load(Path(summary["package"]) / lineage["fitted_rows"]["file"], allow_pickle=False)
    test_rows = json.loads((Path(summary["package"]) / "evaluation.json").read_text())["test_rows"]
    assert lineage["fitted_rows"]["fingerprints"] == len(fitted) == 7043 - test_rows  # by id: all distinct
    # ... and the code and the run that built it: this checkout's commit, kfp.local's run under the run folder.
    assert lineage["code"] == code_version() and lineage["code"]["commit"] == checkout_head()
    assert (Path(summary["run_dir"]) / lineage["run"]["name"]).is_dir() and lineage["run"]["id"]
    assert lineage["run"]["trials"] is None and lineage["run"]["tuning_backend"] is None  # the use case's budget
    # AutoML: every family searched with its budget, the served model chosen on valid.
    assert set(summary["model"]["candidates"]) == {"xgboost", "linear", "forest", "mlp"}
    assert summary["model"]["members"] and all(m["weight"] > 0 for m in summary["model"]["members"])
    assert summary["champion_challenger"]["decision"] == "promote"  # a fresh runs folder: no champion
    # Progress step by step, then the table and where the summary went.
    started = re.findall(rf"^\[(\d+)/{len(STEPS)}\] ([\w-]+)$", shown, re.M)
    assert [int(number) for number, _ in started] == list(range(1, len(STEPS) + 1))
    assert {step for _, step in started} == set(SHOWN)  # tune-linear, not tune-2
    assert set(summary["step_seconds"]) == set(SHOWN)
    assert all(f"{step} success in" in shown for _, step in started)
    assert "deploy: churn" in shown and "manifest written, no cluster to apply it to" in shown
    for family, trials in churn.tuning.families.items():
        assert f"{'nas' if family == 'mlp' else 'tune'} ({family}): trial {trials}/{trials}" in shown
    assert "features: 19 columns ->" in shown and "train: selected" in shown
    assert "roc_auc" in shown and "all gates passed" in shown
    assert f"summary: {summary_path}" in shown
    # Governance: fairness per sensitive attribute (decided out of fold), mitigation where a gate failed and it was
    # worth its cost, the model card, the audit log.
    assert set(summary["fairness"]) == {"gender", "SeniorCitizen"}
    for result in summary["fairness"].values():
        assert set(result) == {"demographic_parity_difference", "equalized_odds_difference", "disparate_impact_ratio",
                               "gate"}
        assert result["gate"] == "pass" and result["equalized_odds_difference"] <= 0.10
    # Seniors are flagged far more often at one threshold; per-group thresholds close the gap, at a small cost.
    mitigation = summary["fairness_mitigation"]
    assert mitigation["applied"] and mitigation["attributes"] == ["SeniorCitizen"]
    assert mitigation["constraint"] == "equalized_odds" and not mitigation["randomized"]
    senior = mitigation["gates"]["SeniorCitizen"]["equalized_odds_difference"]
    assert senior["single_threshold"]["out_of_fold"] > 0.10 >= senior["mitigated"]["out_of_fold"]
    cost = {option: mitigation["outcomes"][option]["out_of_fold"]["expected_cost_per_1000"]
            for option in ("single_threshold", "mitigated")}
    assert cost["mitigated"] <= 1.10 * cost["single_threshold"]  # max_cost_increase
    assert set(mitigation["thresholds"]) == {"SeniorCitizen=0", "SeniorCitizen=1", "*"}
    assert "fairness mitigation applied: per-group thresholds pass every gate at an acceptable cost" in shown
    assert f"bias: SeniorCitizen equalized_odds_difference {senior['single_threshold']['out_of_fold']:.3f} at the " \
           f"single threshold -> {senior['mitigated']['out_of_fold']:.3f} mitigated" in shown
    assert Path(summary["model_card"]).is_file() and summary["model_card"].startswith(summary["package"])
    # The dashboard's HTML reports are valid pages, and load in a browser with every plot.
    run_dir = next(Path(summary["run_dir"]).glob("flowline-churn-*"))
    pages = [run_dir / "bias" / "html_report", run_dir / "explain" / "report", run_dir / "package" / "model_card"]
    for page in pages:
        assert_valid_html(page.read_text())
    # The dashboard's card is the package's, naming its package version, its reports named rather than linked
    # (they are not beside it there).
    from flowline.components.package.model_card import model_card_html

    card = json.loads((Path(summary["package"]) / "model_card.json").read_text())
    assert (run_dir / "package" / "model_card").read_text() == model_card_html(card, manifest["version"])
    assert Path(summary["model_card"]).read_text() == model_card_html(card)
    widths = loaded_image_widths(chromium, run_dir / "explain" / "report", tmp_path)
    assert len(widths) == 1 + 3 + 5 and min(widths) > 100  # importance, 3 dependence plots, 5 instances
    # Every report is a file in the package named by its extension, listed in the summary and the table, and each
    # HTML one shows in a browser as a page, not as source.
    package = Path(summary["package"])
    assert summary["reports"] == {
        "model_card": str(package / "model_card.html"), "profile": str(package / "reports" / "profile.md"),
        "feature_search": str(package / "reports" / "feature_search.md"),
        "evaluation": str(package / "reports" / "evaluation.md"),
        "fairness": str(package / "reports" / "fairness.html"),
        "explanation": str(Path(summary["run_dir"]) / "reports" / "explanation.html")}  # raw values: not packaged
    assert set(manifest["files"]) >= {str(Path(path).relative_to(package)) for name, path in summary["reports"].items()
                                      if name != "explanation"}
    assert (run_dir / "explain" / "report").read_text() == Path(summary["reports"]["explanation"]).read_text()
    assert (package / "reports" / "fairness.html").read_text() == (run_dir / "bias" / "html_report").read_text()
    for name, path in summary["reports"].items():
        assert re.search(rf"^report: {name.replace('_', ' ')} +{re.escape(path)} *$", shown, re.M), name
        if path.endswith(".html"):
            assert_renders_as_a_page(chromium, Path(path), tmp_path)
    card_images = loaded_image_widths(chromium, package / "model_card.html", tmp_path)
    assert len(card_images) == 3 + 2 + 1 and min(card_images) > 100  # ROC, PR, calibration; 2 attributes; importance
    decision = verify_audit_log(summary["audit_log"])[-1]["what"]
    assert decision["fairness"] == {"gender": "pass", "SeniorCitizen": "pass"} and decision["fairness_mitigation"]
    # run.log keeps every task's own lines, but not kfp.local's input JSON dumps or its colour codes.
    run_log = (Path(summary["run_dir"]) / "run.log").read_text()
    assert "Got executor_input" not in shown and "Got executor_input" not in run_log and "use_case_json" not in run_log
    assert "\x1b" not in run_log and "\x1b" not in shown
    assert "Task 'deploy' finished with status SUCCESS" in run_log and "    train: selected" in run_log
    with running_server([f"churn={summary['package']}"]) as url:  # the README's churn answers are this run's
        assert readme_examples.check(url, "churn") == 2


def test_a_second_use_case_on_another_csv_needs_no_code(data_home, tmp_path: Path, capsys):
    """Credit-card transactions: a different file, label and columns, only a YAML file.

    Run twice in one runs folder: the second run's champion is the first run's package,
    the same data and seeds give the same model, so it is kept and never deployed.
    """
    columns = {"Time": {"type": "number", "min": 0}, "Amount": {"type": "number", "min": 0}}
    columns.update({f"V{i}": {"type": "number"} for i in range(1, 11)})  # a contract need not list every column
    use_case = {
        "name": "card-fraud",
        "task": "binary",
        "data": {"path": str(data_home / "creditcard_fraud_sample.csv")},
        "label": {"column": "Class", "positive": "1", "values": ["0", "1"]},
        "columns": columns,
        "gates": {"auprc": {"min": 0.8}},
        "costs": {"false_negative": 100, "false_positive": 5},
        "features": {"search": False},
        "tuning": {"families": {"xgboost": 3, "linear": 2}},
    }
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(use_case))
    summaries = []
    for _ in range(2):
        code = main(["run", "--use-case", str(path), "--runs-dir", str(tmp_path / "runs")])
        shown = capsys.readouterr().out
        assert code == 0, shown
        summaries.append(json.loads(Path(shown.rsplit("summary: ", 1)[1].strip()).read_text()))
    first, second = summaries
    assert first["use_case"] == "card-fraud" and first["rows"]["rows_in"] == 3265
    assert first["undeclared_columns"] == [f"V{i}" for i in range(11, 29)]  # named in the summary, never dropped silently
    assert re.search(r"^columns not declared +V11, V12, .*, V28 \(not used\) *$", shown, re.M)  # in the end-of-run table
    assert first["metrics"]["roc_auc"] > 0.95
    assert "tune (xgboost): trial 3/3" in shown and "tune (forest): skipped" in shown and "nas (mlp): skipped" in shown
    assert first["champion_challenger"]["decision"] == "promote"
    kept = second["champion_challenger"]
    assert kept["decision"] == "keep" and kept["champion"]["package"] == first["package"]
    assert kept["test"] == "delong" and kept["p_value"] == 1.0 and kept["difference"] == 0
    assert "not applied: the champion stays" in shown
    # The registry reads both runs back from the audit log: the first is the champion, the kept one rejected.
    assert main(["models", "card-fraud", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert [(m["version"], m["stage"], m["metrics"], m["dataset_sha256"]) for m in models] == [
        (run["package_version"], stage, {"auprc": run["gates"]["auprc"]["value"]}, run["dataset_sha256"])
        for run, stage in ((first, "champion"), (second, "rejected"))]
    assert main(["runs", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [(r["run_dir"], r["outcome"], r["package_version"], r["decision"]) for r in runs] == [
        (run["run_dir"], "succeeded", run["package_version"], run["champion_challenger"]["decision"])
        for run in (first, second)]


def test_a_time_budget_runs_one_search_step_and_the_summary_says_how_it_was_spent(data_home, tmp_path: Path, capsys):
    use_case = {
        "name": "card-budget",
        "task": "binary",
        "data": {"path": str(data_home / "creditcard_fraud_sample.csv")},
        "label": {"column": "Class", "positive": "1", "values": ["0", "1"]},
        "columns": {"Amount": {"type": "number", "min": 0}, **{f"V{i}": {"type": "number"} for i in range(1, 6)}},
        "costs": {"false_negative": 100, "false_positive": 5},
        "features": {"search": False},
        "tuning": {"families": {"xgboost": 1000, "linear": 1000}, "max_boost_rounds": 100},
    }
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(use_case))
    code = main(["run", "--use-case", str(path), "--runs-dir", str(tmp_path / "runs"), "--time-budget", "4"])
    shown = capsys.readouterr().out
    assert code == 0, shown
    summary = json.loads(Path(shown.rsplit("summary: ", 1)[1].strip()).read_text())
    spent = summary["search_budget"]
    assert spent["time_budget"] == 4 and set(spent["families"]) == {"xgboost", "linear"}
    assert all(0 <= start < 4 for family in spent["families"].values() for start in family["starts"])
    assert all(family["trials"] == len(family["starts"]) > 0 for family in spent["families"].values())
    assert re.search(r"^search budget +\d+ of 4 s: linear \d+ trials in \d+ s \(.*; xgboost \d+ trials", shown, re.M)
    assert "tune-xgboost" not in shown and "nas" not in shown.split("steps (", 1)[1].split(")", 1)[0]
    (report,) = (tmp_path / "runs").glob("card-budget-*/*/search/budget_report")
    assert report.read_text().startswith("# How the 4 s search budget was spent")
    # The Kubeflow UI shows each family's search as the tune steps show theirs (it showed trials and seconds alone).
    (executed,) = (tmp_path / "runs").glob("card-budget-*/*/search/executor_output.json")
    artifacts = json.loads(executed.read_text())["artifacts"]
    logged = artifacts["tuning_metrics"]["artifacts"][0]["metadata"]
    for family in ("xgboost", "linear"):
        assert logged[f"{family}_trials"] == spent["families"][family]["trials"]
        assert logged[f"{family}_seconds"] == spent["families"][family]["seconds"]
        assert 0.5 < logged[f"{family}_valid_roc_auc"] <= 1
        assert artifacts[family]["artifacts"][0]["metadata"]["params"]
    assert artifacts["mlp"]["artifacts"][0]["metadata"] == {"skipped": True}


def test_a_broken_source_fails_the_run_naming_the_step_and_the_cause(data_home, write_csv, tmp_path: Path, capsys):
    source = write_csv("customerID,gender\n1,Male\n")
    code = main(["run", "churn", "--source", str(source), "--runs-dir", str(tmp_path / "runs")])
    captured = capsys.readouterr()
    assert code == EXIT_ERROR
    assert "ingest failure in" in captured.out
    assert "ContractError" in captured.out and "'SeniorCitizen'" in captured.out
    assert "flowline: run failed" in captured.err and "'ingest'" in captured.err
    # One line: what is wrong, and where the full log is.
    (run_log,) = (tmp_path / "runs").glob("churn-*/run.log")
    assert captured.err.count("\n") == 1 and captured.err.endswith(f"(the full log: {run_log})\n")
    assert "Traceback" not in captured.out and "\x1b" not in captured.out + captured.err
    assert "Traceback" in run_log.read_text() and "\x1b" not in run_log.read_text()
    # From a notebook: a Path is a source like its text; a DataFrame is refused before any run folder is made.
    from flowline.pipelines.local_run import run_local

    with pytest.raises(RuntimeError, match="step 'ingest'.*'SeniorCitizen'"):
        run_local("churn", tmp_path / "from-python", source=source, quiet=True)
    with pytest.raises(TypeError, match="source: a path, http.s. URL or s3:// URI of the data, got DataFrame"):
        run_local("churn", tmp_path / "not-made", source=pd.read_csv(source))
    assert not (tmp_path / "not-made").exists()


def test_clv_runs_from_the_transaction_log_to_a_package_answering_value(data_home, tmp_path: Path, capsys):
    """`flowline run clv` with one trial per family: ingest -> customer-rows -> ... -> package."""
    summary_path = tmp_path / "summary.json"
    code = main(["run", "clv", "--trials", "1", "--runs-dir", str(tmp_path / "runs"), "--summary", str(summary_path)])
    shown = capsys.readouterr().out
    assert code == 0, shown
    summary = json.loads(summary_path.read_text())
    assert summary["task"] == "regression" and summary["rows"]["rows_in"] == 69659
    assert {"mae", "rmse", "spearman", "gini", "total_predicted", "total_actual"} <= set(summary["metrics"])
    # Test: every CDNOW customer at the end of calibration, labelled with the holdout's spend.
    assert summary["metrics"]["total_actual"] == pytest.approx(776961.13)
    assert summary["metrics"]["spearman"] > 0.3 and summary["metrics"]["gini"] > 0.5
    started = re.findall(rf"^\[(\d+)/{len(STEPS) + 1}\] ([\w-]+)$", shown, re.M)
    assert [step for _, step in started][:3] == ["ingest", "customer-rows", "split"]
    assert "customer-rows: 23570 at 1997-07-01, 23570 at 1997-09-30" in shown
    evaluation = json.loads((Path(summary["package"]) / "evaluation.json").read_text())
    assert evaluation["segments"] == {"high": 9, "mid": 6, "low": 1} and len(evaluation["deciles"]["edges"]) == 9
    # The audit trail: the run, its package (with the data's hash) and its gate decision, chained.
    records = verify_audit_log(summary["audit_log"])
    assert [r["action"] for r in records] == ["pipeline_run", "package", "gate_decision"]
    assert records[1]["what"]["package_version"] == summary["package_version"]
    assert records[1]["what"]["dataset_sha256"] == REGISTRY["cdnow_master"].sha256
    assert records[2]["what"]["gates_passed"] is True and records[2]["what"]["decision"] == "promote"
    # What a reviewer needs when the package is gone: the YAML and what it said, the code, each gate's value and
    # bounds, and the champion compared with (none, this first run)
    assert records[0]["what"]["use_case_file"] == str(USE_CASES_DIR.resolve() / "clv.yaml")
    assert records[0]["what"]["use_case_sha256"] == hashlib.sha256(
        load_use_case("clv").model_dump_json().encode()).hexdigest()
    assert records[1]["what"]["code"] == code_version()
    assert records[2]["what"]["gate_values"] == {name: {key: gate[key] for key in ("value", "min", "max")}
                                                 for name, gate in summary["gates"].items()}
    assert records[2]["what"]["gate_values"] and records[2]["what"]["champion_version"] is None
    assert main(["runs", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["use_case_file"] == records[0]["what"]["use_case_file"]
    assert summary["fairness"] == {} and summary["fairness_mitigation"] is None  # regression: none declared
    card = json.loads((Path(summary["package"]) / "model_card.json").read_text())
    assert card["explanation"]["units"] == "prediction" and card["metrics"]["spearman"]["ci95"][0] < \
        summary["metrics"]["spearman"] < card["metrics"]["spearman"]["ci95"][1]
    assert set(summary["reports"]) == {"model_card", "profile", "feature_search", "evaluation", "fairness",
                                       "explanation"}
    with running_server([f"clv={summary['package']}"]) as url:
        assert readme_examples.check(url, "clv") == 1


def test_run_local_takes_a_use_case_by_name_and_refuses_a_negative_budget_before_it_starts(tmp_path):
    """What a notebook writes first: run_local("churn"). A name it does not know, or trials below 0, is refused
    at once, before a run folder is made."""
    from flowline.pipelines.local_run import run_local
    from flowline.use_case import UseCaseError

    with pytest.raises(UseCaseError, match="nope"):
        run_local("nope", tmp_path / "runs")
    with pytest.raises(ValueError, match="trials -1: give a number of trials per family"):
        run_local("churn", tmp_path / "runs", -1)
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_stops_the_run_with_one_line_naming_the_step_and_records_it_as_interrupted(data_home, tmp_path: Path):
    """A Ctrl-C during a run printed 40 lines of kfp.local's frames and no word of the run or its folder."""
    import os
    import signal
    import sys
    import time

    runs = tmp_path / "runs"
    run = subprocess.Popen(
        [sys.executable, "-m", "flowline.pipelines.cli", "run", "churn", "--trials", "1", "--runs-dir", str(runs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "FLOWLINE_DATA_HOME": str(data_home)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background job may inherit it ignored
    deadline = time.monotonic() + 120
    while not any("Executing task 'split'" in log.read_text() for log in runs.glob("churn-*/run.log")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole foreground group
    _, error = run.communicate(timeout=60)
    (run_dir,) = runs.glob("churn-*")
    assert run.returncode == 130, error
    *warned, said = error.splitlines()
    assert said.startswith("flowline: run interrupted during step 'split': the run folder "), error
    assert f"{run_dir} is incomplete" in said and "Traceback" not in error and all("warning" in w for w in warned)
    (record,) = verify_audit_log(runs / "audit.jsonl")
    assert (record["what"]["outcome"], record["what"]["error"]) == ("interrupted", "interrupted during step 'split'")
    assert main(["models", "--runs-dir", str(runs)]) == 0  # no package was recorded
