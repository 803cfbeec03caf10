"""The local model registry: runs and packages read back from the audit log, listed, shown, opened, and
resolved by use-case name, YAML path or version for serve, deploy and run --champion."""

import hashlib
import json
import re
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from flowline import audit
from flowline.audit import verify as verify_log
from flowline.package.format import LINEAGE_FILE, Package
from flowline.pipelines.cli import EXIT_ERROR, main
from flowline.registry import newest_package, read, resolve_package
from flowline.inference_services.local_server import running_server
from flowline.use_case import UseCaseError
from flowline.use_case_loader import USE_CASES_DIR, load_use_case
from serving_helpers import recorded, records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


@pytest.fixture
def runs(churn_package, churn_package_b, churn, tmp_path: Path) -> Path:
    """Two churn runs: the first (no champion) promoted, the second compared with it."""
    runs = tmp_path / "runs"
    recorded(runs, churn_package, churn, "churn-1")
    recorded(runs, churn_package_b, churn, "churn-2")
    return runs


def listed(capsys, *argv: str):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_models_lists_the_champion_and_the_kept_package_with_the_metrics_that_decided(runs, churn_package,
                                                                                      churn_package_b, capsys):
    first, second = Package.open(churn_package), Package.open(churn_package_b)
    assert first.evaluation["champion_challenger"]["decision"] == "promote"
    assert second.evaluation["champion_challenger"]["decision"] == "keep"
    models = listed(capsys, "models", "churn", "--runs-dir", str(runs), "--json")
    assert [(m["version"], m["stage"]) for m in models] == [(first.version, "champion"), (second.version, "rejected")]
    for model, package in zip(models, (first, second)):
        assert model["metrics"] == {name: gate["value"] for name, gate in package.evaluation["gates"].items()}
        assert set(model["metrics"]) == {"roc_auc", "auprc"}
        lineage = json.loads((package.path / LINEAGE_FILE).read_text())
        assert model["dataset_sha256"] == lineage["dataset"]["source_sha256"]
        assert model["gates_passed"] is True and model["run_dir"].endswith(("churn-1", "churn-2"))
    assert models[1]["reason"].startswith("not significantly better")
    assert listed(capsys, "models", "fraud", "--runs-dir", str(runs), "--json") == []
    assert main(["models", "--runs-dir", str(runs)]) == 0
    table = capsys.readouterr().out
    assert f"{first.version}  champion" in table and f"{second.version}  rejected" in table
    assert f"roc_auc {first.evaluation['gates']['roc_auc']['value']:.4f}" in table
    assert newest_package(runs, "churn", promoted_only=True).parts[-2] == "churn-1"  # what the next run must beat


def test_runs_lists_each_run_with_its_outcome_gates_and_package(runs, churn_package_b, capsys):
    error = "step 'ingest': ContractError: 412 of 7043 rows\nbreak the contract, " + "tenure 400, " * 60
    audit.append(runs / audit.AUDIT_FILE, "pipeline_run", {"use_case": "churn", "run_dir": str(runs / "churn-3"),
                                                           "outcome": "failed", "error": error})
    found = listed(capsys, "runs", "--runs-dir", str(runs), "--json")
    assert [(run["run_dir"].rsplit("/", 1)[1], run["outcome"], run["decision"]) for run in found] == [
        ("churn-1", "succeeded", "promote"), ("churn-2", "succeeded", "keep"), ("churn-3", "failed", None)]
    assert found[1]["package_version"] == Package.open(churn_package_b).version
    assert found[1]["gates"] == {"roc_auc": True, "auprc": True} and found[1]["wall_seconds"] == 1.5
    assert found[2]["package_version"] is None and found[2]["metrics"] == {}
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    table = capsys.readouterr().out
    assert "auprc pass, roc_auc pass" in table and "step 'ingest': ContractError: 412 of 7043 rows break" in table
    assert "gate failed" not in table  # every gate of both runs passed
    from flowline.pipelines.cli.registry import _outcome_text  # a run whose package failed a gate exited 3

    assert _outcome_text({"outcome": "succeeded", "gates": {"roc_auc": False}, "fairness": {}}) == \
        "succeeded, gate failed" == _outcome_text({"outcome": "succeeded", "gates": {}, "fairness": {"gender": "fail"}})
    assert max(map(len, table.splitlines())) < 250 and found[2]["error"] == error  # clipped in the table only


def test_the_stages_follow_the_recorded_decisions(churn_package, tmp_path: Path):
    """promote, promote, keep, failed gates, no decision: retired, champion, rejected, rejected, challenger."""
    runs, log = tmp_path / "runs", tmp_path / "runs" / audit.AUDIT_FILE
    for run, decision, passed in (("a", "promote", True), ("b", "promote", True), ("c", "keep", True),
                                  ("d", "keep", False), ("e", None, None)):
        copy = shutil.copytree(churn_package, runs / run / "package")
        version = {"use_case": "churn", "package_version": run * 12}
        audit.append(log, "package", {**version, "package": str(copy)})
        if decision:
            audit.append(log, "gate_decision", {**version, "decision": decision, "gates_passed": passed})
    assert [(e.version[0], e.stage) for e in read(runs).packages] == [
        ("a", "retired"), ("b", "champion"), ("c", "rejected"), ("d", "rejected"), ("e", "challenger")]
    shutil.rmtree(runs / "b")  # a champion removed by hand stays the champion: its predecessor was silently back
    registry = read(runs)
    assert [(e.version[0], e.stage, e.found) for e in registry.recorded][:2] == [("a", "retired", True),
                                                                                 ("b", "champion", False)]
    assert "b" * 12 not in [e.version for e in registry.packages]
    with pytest.raises(FileNotFoundError, match=f"package {'b' * 12} of use case 'churn' \\(champion\\) is recorded "
                                                f"at {runs / 'b' / 'package'}, but its folder is gone"):
        newest_package(runs, "churn", promoted_only=True)  # what `flowline run` compares with: not "a" instead
    with pytest.raises(FileNotFoundError, match="its folder is gone"):
        registry.version("bbb")


def test_a_champion_chosen_by_hand_is_recorded_and_followed_until_a_run_promotes_another(churn_package, tmp_path,
                                                                                          capsys):
    """No local rollback existed: deploying an earlier package or rolling a canary back left the registry's
    champion, what `flowline run` compares with, where it was."""
    runs, log = tmp_path / "runs", tmp_path / "runs" / audit.AUDIT_FILE
    for run, decision, passed in (("a", "promote", True), ("b", "promote", True), ("c", "keep", True),
                                  ("d", "keep", False)):
        copy = shutil.copytree(churn_package, runs / run / "package")
        version = {"use_case": "churn", "package_version": run * 12}
        audit.append(log, "package", {**version, "package": str(copy)})
        audit.append(log, "gate_decision", {**version, "decision": decision, "gates_passed": passed,
                                            "reason": f"decided {decision}"})
    assert main(["champion", "aaa", "--reason", "b mislabels new customers", "--runs-dir", str(runs)]) == 0
    assert capsys.readouterr().out.startswith(f"{'a' * 12} is now the champion of use case 'churn', in place of "
                                              f"{'b' * 12}")
    record = verify_log(log)[-1]
    assert (record["action"], record["what"]["package_version"], record["what"]["replaces"],
            record["what"]["reason"]) == ("champion", "a" * 12, "b" * 12, "b mislabels new customers")
    assert [(e.version[0], e.stage) for e in read(runs).recorded] == [
        ("a", "champion"), ("b", "retired"), ("c", "rejected"), ("d", "rejected")]
    assert newest_package(runs, "churn", promoted_only=True) == runs / "a" / "package"  # what a run now beats
    for refused, why in (("ddd", "failed its gates"), ("aaa", "is the champion of use case 'churn' already")):
        assert main(["champion", refused, "--reason", "r", "--runs-dir", str(runs)]) == EXIT_ERROR
        assert why in capsys.readouterr().err
    assert main(["champion", "ccc", "--reason", "kept, but the better one", "--runs-dir", str(runs)]) == 0
    copy = shutil.copytree(churn_package, runs / "e" / "package")  # a later run promotes its own package
    audit.append(log, "package", {"use_case": "churn", "package_version": "e" * 12, "package": str(copy)})
    audit.append(log, "gate_decision", {"use_case": "churn", "package_version": "e" * 12, "decision": "promote"})
    assert [(e.version[0], e.stage) for e in read(runs).recorded] == [
        ("a", "retired"), ("b", "retired"), ("c", "retired"), ("d", "rejected"), ("e", "champion")]


def test_a_runs_folder_moved_whole_is_read_where_it_is(runs, churn_package, churn_package_b, tmp_path, capsys):
    """The log records absolute paths: a runs folder restored elsewhere listed no packages at all."""
    moved = shutil.move(runs, tmp_path / "restored")
    models = listed(capsys, "models", "--runs-dir", str(moved), "--json")
    assert [(m["stage"], m["problem"], Path(m["path"]).is_relative_to(moved)) for m in models] == [
        ("champion", None, True), ("rejected", None, True)]
    card = listed(capsys, "show", models[0]["version"], "--runs-dir", str(moved), "--json")
    assert models[0]["metrics"] == {name: card["metrics"][name]["value"] for name in ("roc_auc", "auprc")}
    assert all(run["run_dir"].startswith(str(moved)) and run["package_version"]
               for run in listed(capsys, "runs", "--runs-dir", str(moved), "--json"))
    assert newest_package(moved, "churn", promoted_only=True) == Path(moved, "churn-1", "package")
    assert main(["models", "--runs-dir", str(moved)]) == 0
    shutil.rmtree(Path(moved, "churn-1"))
    assert main(["models", "--runs-dir", str(moved)]) == 0
    assert f"folder gone: {runs / 'churn-1' / 'package'}" in capsys.readouterr().out


def test_show_and_open_take_a_version_prefix(runs, churn_package, capsys):
    version = Package.open(churn_package).version
    assert main(["show", version[:5], "--runs-dir", str(runs)]) == 0
    card = capsys.readouterr().out
    assert f"{version} (champion)" in card and "Telco customers likely to churn" in card
    assert "roc_auc" in card and "95% interval" in card and "Decision: promote" in card
    # what a reviewer needs beside the numbers: the code, the run, the search, and where each gate was judged
    for shown in ("code      ", "flowline 0.1.0", "search ", "environment ", "Python 3.", "judged on", "test rows"):
        assert shown in card, shown
    assert listed(capsys, "show", version[:5], "--runs-dir", str(runs), "--json")["model"]["use_case"] == "churn"
    reports = listed(capsys, "open", version[:5], "--runs-dir", str(runs), "--json")
    card = str(runs / "churn-1" / "package" / "model_card.html")
    assert reports["model_card"] == card and list(reports.values()).count(card) == 1  # listed once, opened once
    assert reports["explanation"] == str(runs / "churn-1" / "explain.html")
    assert Path(card).is_file()


def test_a_package_edited_and_hashed_again_is_refused_under_the_version_its_run_recorded(runs, churn_package,
                                                                                          capsys):
    """Without a signing key, a writer of the folder could edit the card, hash the manifest again and be shown, opened
    and served under the version the audit log recorded: the package verified alone, nobody checked it against the
    log. A tampered card is refused by every reader; its versions, both named."""
    from flowline.package.format import CARD_JSON, MANIFEST_FILE
    from flowline.package.signing import content_version

    recorded_version = Package.open(churn_package).version
    folder = runs / "churn-1" / "package"
    card = json.loads((folder / CARD_JSON).read_text())
    card["metrics"] = {**card.get("metrics", {}), "roc_auc": 0.99}
    (folder / CARD_JSON).write_text(json.dumps(card))
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][CARD_JSON] = hashlib.sha256((folder / CARD_JSON).read_bytes()).hexdigest()
    manifest["version"] = content_version({field: manifest[field] for field in ("format", "name", "files")})
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert Package.open(folder).version == manifest["version"] != recorded_version  # it verifies, alone
    said = f"version {manifest['version']}, but the audit log recorded {recorded_version} there"
    for command in (["show", recorded_version], ["open", recorded_version], ["serve", recorded_version, "--port", "9"],
                    ["score", recorded_version, "--input", "x.csv", "--output", "y.parquet"]):
        assert main([*command, "--runs-dir", str(runs)]) == EXIT_ERROR, command
        assert said in capsys.readouterr().err, command
    with pytest.raises(Exception, match=said):
        resolve_package("churn", runs, champion=True)  # what `run` compares a new model with
    assert main(["models", "churn", "--runs-dir", str(runs)]) == 0
    assert f"does not verify: {said}" in capsys.readouterr().out


def test_an_ambiguous_or_unknown_version_is_a_clear_error_listing_what_exists(runs, churn_package, capsys):
    version = Package.open(churn_package).version
    shared = {"use_case": "churn", "package_version": version + "ff"}  # the same package again under a longer version
    audit.append(runs / audit.AUDIT_FILE, "package", {**shared, "package": str(runs / "churn-1" / "package")})
    assert main(["show", version[:6], "--runs-dir", str(runs)]) == EXIT_ERROR
    error = capsys.readouterr().err
    assert f"version {version[:6]!r} is ambiguous" in error and version in error and f"{version}ff" in error
    assert main(["open", "0000zz", "--runs-dir", str(runs)]) == EXIT_ERROR
    error = capsys.readouterr().err
    assert "no package of version '0000zz'" in error and f"{version} (churn)" in error
    assert main(["show", version, "--runs-dir", str(runs)]) == 0  # a whole version is never ambiguous
    capsys.readouterr()
    assert main(["show", " ", "--runs-dir", str(runs)]) == EXIT_ERROR  # not "ambiguous": a prefix of every version
    assert "an empty package version" in capsys.readouterr().err


def test_serve_deploy_and_champion_resolve_a_use_case_by_name_yaml_path_or_version(
        churn_package, churn_package_b, churn_test_rows, tmp_path: Path, monkeypatch, capsys):
    """A use case defined in a YAML of one's own, known to no built-in list: by its name, its YAML path or a
    package version, as serve, deploy and run --champion take it."""
    document = yaml.safe_load((USE_CASES_DIR / "churn.yaml").read_text())
    yaml_path = tmp_path / "accounts.yaml"
    yaml_path.write_text(yaml.safe_dump({**document, "name": "accounts-churn"}))
    accounts = load_use_case(yaml_path)
    runs = tmp_path / "runs"
    champion = recorded(runs, churn_package, accounts, "accounts-churn-1")
    newest = recorded(runs, churn_package_b, accounts, "accounts-churn-2")
    version = Package.open(churn_package).version
    assert resolve_package("accounts-churn", str(runs)) == str(newest)
    assert resolve_package(str(yaml_path), str(runs)) == str(newest)
    assert resolve_package("accounts-churn", str(runs), champion=True) == str(champion)
    assert resolve_package(version[:7], str(runs)) == str(champion)
    assert resolve_package(str(champion), str(runs)) == str(champion)
    with pytest.raises(UseCaseError, match="'no-such' is no package folder, use case or package version under "
                                           ".*use cases: accounts-churn, .*churn"):
        resolve_package("no-such", str(runs))
    with pytest.raises(FileNotFoundError, match="no package of use case 'fraud'.*run `flowline run fraud` first"):
        resolve_package("fraud", str(runs))

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    manifest = tmp_path / "isvc.yaml"
    assert main(["deploy", "accounts-churn", "--runs-dir", str(runs), "-o", str(manifest),
                 "--audit-log", str(tmp_path / "deploy-audit.jsonl")]) == 0
    storage = yaml.safe_load(manifest.read_text())["spec"]["predictor"]["model"]["storageUri"]
    assert storage.endswith(f"/{Package.open(churn_package_b).version}")
    assert main(["run", str(yaml_path), "--runs-dir", str(runs), "--champion", "0000zz"]) != 0
    assert "'0000zz' is no package folder" in capsys.readouterr().err  # refused before any step runs

    body = {"instances": records_of(churn_test_rows.head(3))}
    with running_server([version[:7]], extra_args=["--runs-dir", str(runs)], log_path=str(tmp_path / "s.log")) as url:
        assert httpx.post(f"{url}/v1/models/churn:predict", json=body).json()["model_version"] == version


def test_show_gives_the_thresholds_that_decide_served_rows():
    from flowline.pipelines.cli.registry import card_text

    mitigated = {"threshold": 0.095, "fairness": {"mitigation": {
        "applied": True, "thresholds": {"SeniorCitizen=0": 0.0671, "SeniorCitizen=1": 0.1733, "*": 0.095}}}}
    text = card_text(mitigated, "v1", "champion")
    assert re.search(r"threshold SeniorCitizen=1\s+0\.1733", text)
    assert re.search(r"threshold \(other groups\)\s+0\.0950?", text)
    assert re.search(r"single threshold \(not served\)\s+0\.0950?", text)
    assert "threshold" not in card_text({"threshold": None}, "v1", "champion")  # a regression decides nothing
    # The test precision, recall and cost are the single threshold's: the served decisions' are shown beside them
    # (show printed the single threshold's alone, while the HTML card said they were not served).
    outcomes = {"single_threshold": {"test": {"recall": 0.9545, "expected_cost_per_1000": 38431.5}},
                "mitigated": {"test": {"recall": 0.9733, "expected_cost_per_1000": 38325.1}}}
    mitigated["fairness"]["mitigation"]["outcomes"] = outcomes
    text = card_text(mitigated, "v1", "champion")
    assert "at the single threshold, which is not served" in text
    assert re.search(r"recall\s+0\.9545\s+0\.9733", text)
    assert re.search(r"expected_cost_per_1000\s+38,431\.5000?\s+38,325\.1", text)
    assert "not served" not in card_text({"threshold": 0.1}, "v1", "champion").replace("(not served)", "")

    # What the use case leaves empty reads as the HTML card says it: an empty "Intended use:" line looked cut off.
    empty = card_text({"intended_use": "", "model": {"description": ""}}, "v1", "champion")
    assert "Intended use: Not stated by the use case (intended_use)." in empty
    assert re.search(r"description\s+Not stated by the use case \(description\)\.", empty)


def test_open_says_when_no_browser_could_open_the_reports(runs, churn_package, capsys, monkeypatch):
    import webbrowser

    monkeypatch.setattr(webbrowser, "open", lambda url: False)  # what it answers on a machine without one
    assert main(["open", Package.open(churn_package).version[:5], "--runs-dir", str(runs), "--browser"]) == 0
    assert "no web browser could be opened (set $BROWSER); open the paths above" in capsys.readouterr().err



def test_a_misspelt_use_case_is_named_not_listed_as_having_nothing(runs, capsys):
    """`flowline runs chrun` said "no runs recorded" and exited 0, though churn's runs were there (the README
    audit). A built-in use case not run yet still lists nothing."""
    for command in ("runs", "models"):
        assert main([command, "chrun", "--runs-dir", str(runs)]) == 1
        assert f"no {command if command == 'runs' else 'packages'} of use case 'chrun' under {runs}; recorded use " \
               f"cases: churn" in capsys.readouterr().err
    assert main(["features", "list", "chrun", "--runs-dir", str(runs)]) == 1
    assert "no feature sets of use case 'chrun'" in capsys.readouterr().err
    assert main(["runs", "clv", "--runs-dir", str(runs)]) == 0 and "no runs recorded" in capsys.readouterr().out


def test_erase_takes_a_use_case_only_the_runs_folder_records(churn_package, churn, tmp_path: Path, capsys):
    """`erase --use-case customers` (a use case init drafted, run from its YAML) was refused as no built-in use
    case, where `score customers` and `serve customers` took it (the README audit). The use case is its newest
    package's."""
    runs = tmp_path / "runs"
    recorded(runs, churn_package, churn.model_copy(update={"name": "customers"}), "customers-1")
    assert main(["erase", "customers", "--id", "7590-VHVEG", "--runs-dir", str(runs)]) == 0
    shown = capsys.readouterr().out
    assert "recorded in" in shown
    assert "the use case's data, which its next run reads, is not edited: remove the subject there too: " in shown
    assert main(["erase", "custmers", "--id", "7590-VHVEG", "--runs-dir", str(runs)]) == 1
    assert "unknown use case 'custmers'" in capsys.readouterr().err
