import base64
import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from html_checks import assert_renders_as_a_page, loaded_image_widths

from flowline.code_version import code_version, environment
from flowline.drift import save_detector
from flowline.package.format import (
    FORMAT,
    Package,
    LINEAGE_FILE,
    MANIFEST_FILE,
    SIGNATURE,
    PackageError,
    verify,
    write_manifest,
)
from flowline.components.package.building import build_package
from flowline.package.signing import KEY_ENV, NoSigningKeyWarning, canonical
from flowline.datasets import sha256_of_file

DATASET = {"source": "data.csv", "source_sha256": "ab" * 32, "rows_in": 10, "rows_kept": 9, "rows_quarantined": 1,
           "undeclared_columns": ["notes"]}
# What evaluate + bias and explain hand the package step, cut down to what the model card reads.
GROUPS = {"group": {
    "by_group": {group: {"rows": rows, "selection_rate": rate, "true_positive_rate": 0.7, "false_positive_rate": 0.1}
                 for group, rows, rate in (("a", 50, 0.4), ("b", 40, 0.2), ("c", 3, 0.3))},
    "compared_groups": ["a", "b"],
    "demographic_parity_difference": 0.3, "equalized_odds_difference": 0.1, "disparate_impact_ratio": 0.6,
    "gates": {"disparate_impact_ratio": {"value": 0.6, "min": 0.8, "max": None, "passed": False}}, "gate": "fail"}}
OUTCOMES = {"expected_cost_per_1000": 120.0, "balanced_accuracy": 0.8, "recall": 0.7, "selection_rate": 0.2}
FAIRNESS = {"attributes": GROUPS, "threshold": 0.3, "failing": ["group"], "mitigated": None, "mitigation": None,
            "single_threshold": {"out_of_fold": {"attributes": GROUPS, "outcomes": OUTCOMES},
                                 "test": {"attributes": GROUPS, "outcomes": OUTCOMES}},
            "decided_on": {"out_of_fold_rows": 370, "test_rows": 93}, "applied": False,
            "reason": "not applied: a fairness gate fails at the single threshold and fairness.mitigation.enabled "
                      "is false", "passed": False}
EVALUATION = {"test_rows": 93, "metrics": {"roc_auc": 0.91}, "confidence_intervals": {"roc_auc": [0.85, 0.96]},
              "threshold": 0.3, "gates": {"roc_auc": {"value": 0.91, "min": 0.8, "max": None, "passed": True}},
              "gates_passed": False, "fairness": FAIRNESS,
              "roc": {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.8, 1.0], "thresholds": [1.0, 0.3, 0.0]},
              "precision_recall": {"recall": [1.0, 0.8, 0.0], "precision": [0.3, 0.7, 1.0]},
              "calibration": [{"rows": 60, "mean_predicted": 0.1, "observed_rate": 0.12},
                              {"rows": 33, "mean_predicted": 0.7, "observed_rate": 0.65}],
              "classes": ["no", "yes"], "confusion_matrix": [[60, 10], [5, 18]], "test_cost_at_threshold": 35.0,
              "champion_challenger": {"decision": "keep", "reason": "the challenger failed its fairness gates"}}
EXPLANATION = {"units": "log-odds", "rows_explained": 93, "global_importance": {"x": 0.5, "group": 0.1},
               "agreement": {"mean_spearman": 0.3, "top_column_agreement": 0.6, "top_columns": 5}}

# The evaluate step's report precedes the fairness gates: it said promote.
REPORTS = {"profile": "### Profile\n", "evaluation": "### Evaluation\n**Champion/challenger, on the quality gates only:** "
           "promote: no champion\n", "fairness": "<!DOCTYPE html><title>f</title>"}


@pytest.fixture
def package(tmp_path: Path, toy_use_case) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text('{"members": [{"family": "linear", "weight": 1.0}]}')
    (model_dir / "training.json").write_text("{}")
    (tmp_path / "fs.json").write_text(json.dumps({"format": "flowline.featureset/v1", "version": "f00d"}))
    (tmp_path / "evaluation.json").write_text(json.dumps(EVALUATION))
    (tmp_path / "explanation.json").write_text(json.dumps(EXPLANATION))
    save_detector(np.arange(20, dtype=np.float32).reshape(10, 2) % 3, [1], 0.01, tmp_path / "drift" / "detector")
    for name, text in REPORTS.items():  # as KFP writes the steps' report artifacts: files with no extension
        (tmp_path / name).write_text(text)
    destination = tmp_path / "package"
    build_package(destination, toy_use_case, model_dir, tmp_path / "fs.json", tmp_path / "evaluation.json", DATASET,
                  tmp_path / "drift", tmp_path / "explanation.json", {name: tmp_path / name for name in REPORTS})
    return destination


def test_the_packaged_evaluation_report_says_what_the_fairness_gates_decided(package: Path, toy_use_case):
    """The evaluate step's report said promote before the bias step failed a fairness gate: the package's report
    is written from its evaluation.json, and says keep, as the evaluation and the card do."""
    from flowline.evaluation_report import report_markdown

    text = (package / "reports" / "evaluation.md").read_text()
    assert text == report_markdown(EVALUATION, toy_use_case)
    assert "**Fairness gates (bias step):** FAIL: group" in text
    assert "**Champion/challenger:** keep: the challenger failed its fairness gates" in text
    regression = {**EVALUATION, "fairness": {"attributes": {}, "passed": True, "note": "no sensitive attributes"},
                  "champion_challenger": {"decision": "promote", "reason": "no champion"}}
    assert "**Fairness gates (bias step):** no sensitive attributes" in report_markdown(regression, toy_use_case)
    assert "promote" not in text
    assert "**Served decisions:** at this single threshold for every row." in text
    rule = {"attributes": ["group"], "constraint": "equalized_odds", "threshold": 0.3, "randomized": False,
            "groups": {"group=a": {"threshold": 0.25}, "group=b": {"threshold": 0.4}}}
    mitigated = report_markdown({**EVALUATION, "fairness": {**FAIRNESS, "mitigation": rule}}, toy_use_case)
    assert "**Served decisions:** per-group thresholds (fairness mitigation): group=a 0.2500, group=b 0.4000, " \
           "0.3000 for every other row. The metrics at a threshold above are the single threshold's" in mitigated
    assert json.loads((package / "model_card.json").read_text())["gates"]["passed"] is False


def test_a_fresh_package_verifies_and_lists_every_file(package: Path):
    manifest = verify(package)
    assert manifest["name"] == "toy"
    on_disk = {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    assert {"drift/detector/config.json", "drift/detector/x_ref.npy"} <= on_disk
    assert set(manifest["files"]) == on_disk
    assert all(manifest["files"][name] == sha256_of_file(package / name) for name in on_disk)


def test_an_altered_file_in_a_subfolder_is_refused(package: Path):
    (package / "drift" / "detector" / "config.json").write_text('{"p_val": 0.5}')
    with pytest.raises(PackageError, match="drift/detector/config.json has sha256"):
        verify(package)


def test_lineage_links_data_to_feature_set_to_model(package: Path):
    lineage = json.loads((package / LINEAGE_FILE).read_text())
    assert lineage["dataset"]["source_sha256"] == DATASET["source_sha256"]
    assert lineage["feature_set"]["version"] == "f00d"
    assert lineage["model"]["files"] == {name: sha256_of_file(package / "model" / name)
                                         for name in ("model.json", "training.json")}
    # The code that built it (this checkout's commit), which the card shows; no run built this one.
    assert lineage["code"] == code_version() and lineage["run"] == {}
    # and the Python and libraries it ran on (only three of them were recorded, in model/training.json)
    assert lineage["environment"] == environment() and lineage["environment"]["libraries"]["pandas"] == "2.3.3"
    card = json.loads((package / "model_card.json").read_text())
    assert card["code"] == lineage["code"] and card["environment"] == lineage["environment"]
    html = (package / "model_card.html").read_text()
    assert f"commit {lineage['code']['commit']}" in html and "scikit-learn 1.9.1" in html
    # the search as the run ran it: its seed and budget, which the card did not say (only the split's seed)
    tuning = Package.open(package).use_case.tuning
    assert card["search"].startswith(f"seed {tuning.seed}; trials per family xgboost ") and card["search"] in html
    # the test rows' class balance, which the card stated nowhere (the confusion matrix above: 93 rows, 23 'yes')
    assert card["data"]["test_rows"] == "93: 23 'yes' (24.7%), 70 'no'" and "93: 23 &#x27;yes&#x27;" in html


def test_an_altered_file_is_refused_by_name(package: Path):
    (package / "model" / "model.json").write_text('{"learner": {"evil": 1}}')
    with pytest.raises(PackageError, match="model/model.json has sha256 .* the manifest says"):
        verify(package)


def test_a_missing_file_is_refused_by_name(package: Path):
    (package / "feature_set.json").unlink()
    with pytest.raises(PackageError, match="feature_set.json is listed in the manifest but missing"):
        verify(package)


def test_an_unlisted_file_is_refused_by_name(package: Path):
    (package / "model.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(PackageError, match="model.pkl is not listed"):
        verify(package)


def test_a_folder_without_manifest_is_not_a_package(package: Path):
    (package / MANIFEST_FILE).unlink()
    with pytest.raises(PackageError, match="manifest.json is missing"):
        verify(package)


def test_every_package_carries_a_model_card_in_json_and_html_listed_in_the_manifest(package: Path):
    from flowline.package.format import CARD_HTML, CARD_JSON

    manifest = verify(package)
    assert {CARD_JSON, CARD_HTML} <= set(manifest["files"])
    card = json.loads((package / CARD_JSON).read_text())
    assert card["data"]["source_sha256"] == DATASET["source_sha256"]
    assert card["data"]["undeclared_columns"] == ["notes"]
    assert card["data"]["feature_set_version"] == "f00d"
    assert card["data"]["model_files_sha256"]["model.json"] == sha256_of_file(package / "model" / "model.json")
    assert card["metrics"]["roc_auc"] == {"value": 0.91, "ci95": [0.85, 0.96]}
    assert card["fairness"]["attributes"]["group"]["gate"] == "fail"
    mitigation = card["fairness"]["mitigation"]
    assert not mitigation["applied"] and mitigation["reason"] == FAIRNESS["reason"]
    assert mitigation["thresholds"] == {"*": 0.3} and mitigation["outcomes"]["mitigated"] is None
    assert mitigation["gates"]["group"]["disparate_impact_ratio"]["single_threshold"] == {"out_of_fold": 0.6, "test": 0.6}
    assert card["gates"]["fairness"]["group"]["disparate_impact_ratio"]["passed"] is False
    assert card["decision"] == {"decision": "keep", "reason": "the challenger failed its fairness gates"}
    assert list(card["explanation"]["top_columns"]) == ["x", "group"]
    limitations = " ".join(card["limitations"])
    assert "group: groups c have fewer than 30 out-of-fold rows (train + valid, where fairness is judged)" in limitations
    assert "LIME and SHAP agree weakly" in limitations  # mean Spearman 0.3
    page = (package / CARD_HTML).read_text()
    assert "<td>columns not declared (not used)</td><td>notes</td>" in page
    assert "0.8500 to 0.9600" in page and 'class="fail"' in page and "Intended use" in page
    assert "Mitigation not applied: a fairness gate fails at the single threshold" in page
    assert "<td>group</td><td>disparate_impact_ratio</td><td>0.6000</td><td></td><td>0.6000</td><td></td>" in page


def test_the_model_card_states_the_drift_detectors_licence(package: Path):
    from importlib import metadata

    from flowline.package.format import CARD_HTML, CARD_JSON

    detector = json.loads((package / CARD_JSON).read_text())["drift_detector"]
    installed = metadata.metadata("alibi-detect")
    assert (detector["version"], detector["licence"]) == (installed["Version"], installed["License"])
    assert detector["licence"] == "Business Source License 1.1"  # the verified set's alibi-detect 0.13.0
    assert "needs a commercial licence from Seldon" in detector["note"]
    assert "Drift detector licence" in (package / CARD_HTML).read_text()


def test_the_steps_reports_are_in_the_package_named_by_their_extension_and_listed(package: Path, tmp_path: Path,
                                                                                 toy_use_case):
    from flowline.package.format import CARD_JSON, REPORT_FILES, REPORTS_DIR

    manifest = verify(package)
    held = {path.name for path in (package / REPORTS_DIR).iterdir()}
    assert held == {"profile.md", "evaluation.md", "fairness.html"}
    for name, text in REPORTS.items():
        if name != "evaluation":  # written from the decided evaluation.json (the next test)
            assert (package / REPORTS_DIR / REPORT_FILES[name]).read_text() == text
        assert f"{REPORTS_DIR}/{REPORT_FILES[name]}" in manifest["files"]
    card = json.loads((package / CARD_JSON).read_text())
    assert card["reports"] == {name: f"reports/{REPORT_FILES[name]}" for name in REPORT_FILES if name in REPORTS}
    assert '<a href="reports/fairness.html">' in (package / "model_card.html").read_text()
    with pytest.raises(ValueError, match="unknown report 'explanation'; expected one of profile, "):
        build_package(tmp_path / "other", toy_use_case, package / "model", package / "feature_set.json",
                      package / "evaluation.json", DATASET, package / "drift", tmp_path / "explanation.json",
                      {"explanation": tmp_path / "fairness"})


def images(page: str) -> dict[str, bytes]:
    """The page's inline images by alt text, decoded."""
    return {alt: base64.b64decode(data) for data, alt in
            re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)">', page)}


def test_the_model_card_plots_curves_calibration_importance_and_fairness_as_inline_png(package: Path, chromium,
                                                                                       tmp_path: Path):
    from flowline.package.format import CARD_HTML, CARD_JSON

    card = json.loads((package / CARD_JSON).read_text())
    assert card["curves"] == {key: EVALUATION[key] for key in ("roc", "precision_recall", "calibration")}
    assert card["fairness"]["groups_on_test"]["group"]["single_threshold"]["b"] == {
        "selection_rate": 0.2, "true_positive_rate": 0.7, "false_positive_rate": 0.1}
    assert card["fairness"]["groups_on_test"]["group"]["mitigated"] is None
    shown = images((package / CARD_HTML).read_text())
    assert set(shown) == {"ROC curve on the test rows", "precision-recall curve on the test rows",
                          "calibration: observed positive rate by bin of predicted probability",
                          "global importance: mean absolute SHAP value per column",
                          "group: selection rate, TPR and FPR by group on the test rows"}
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000 for png in shown.values())
    assert_renders_as_a_page(chromium, package / CARD_HTML, tmp_path)
    widths = loaded_image_widths(chromium, package / CARD_HTML, tmp_path)
    assert len(widths) == len(shown) and min(widths) > 100


def regression_card(use_case, tmp_path: Path) -> str:
    from flowline.components.package.model_card import model_card, model_card_html

    table = [{"decile": d, "rows": 704, "mean_predicted": 1000.0 * d, "mean_actual": 1100.0 * d,
              "share_of_actual": d / 55} for d in range(1, 11)]
    evaluation = {"test_rows": 7043, "metrics": {"rmse": 37650.8162, "mae": 34418.027}, "gates": {},
                  "confidence_intervals": {"rmse": [30000.5, 41000.25], "mae": [0.5, 1.0]}, "gates_passed": True,
                  "deciles": {"edges": [], "table": table}, "fairness": {},
                  "champion_challenger": {"decision": "promote", "reason": "no champion"}}
    lineage = {"dataset": {**DATASET, "rows_in": 7043}, "feature_set": {"version": "f00d"},
               "model": {"files": {"model.json": "ab"}}, "code": code_version(), "run": {}}
    card = model_card(use_case, evaluation, EXPLANATION, lineage, {"members": [{"family": "xgboost", "weight": 1.0}]})
    assert card["curves"] == {"deciles": table}
    return model_card_html(card)


def test_a_regression_card_plots_predicted_against_actual_by_decile(tmp_path: Path):
    from flowline.use_case_loader import load_use_case

    page = regression_card(load_use_case("clv"), tmp_path)
    assert set(images(page)) == {"mean predicted and actual value by decile of prediction on the test rows",
                                 "global importance: mean absolute SHAP value per column"}
    assert "Fairness is measured" not in page and "fairness is not measured" in page


def test_every_number_on_the_card_is_written_one_way(tmp_path: Path):
    from flowline.use_case_loader import load_use_case

    page = regression_card(load_use_case("clv"), tmp_path)
    assert "37,650.8162" in page and "34,418.0270" in page and "30,000.5000 to 41,000.2500" in page
    assert "37650" not in page and "7,043 / 9 / 1" in page and "<td>members</td><td>xgboost</td>" in page
    assert "mean Spearman 0.3000" in page  # in the text and in the limitation it raises
    cells = re.findall(r"<td>(-?[\d,]*\.\d+)</td>", page)
    assert cells and all(re.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d{4}", value) for value in cells), cells


def test_a_clv_card_says_what_its_test_rows_and_its_prediction_are(tmp_path: Path):
    """The card said "test 0.2" of a split whose test rows are every customer at calibration_end, and never what
    the label was: the horizon, the cut-offs, the scaling of the training label, an expected value."""
    from flowline.components.package.model_card import split_text
    from flowline.customer_rows import customer_rows_use_case
    from flowline.use_case_loader import load_use_case

    page = regression_card(customer_rows_use_case(load_use_case("clv")), tmp_path)
    assert ("<td>latest: test = every row at the latest cutoff; valid = the earlier rows of 0.2 of the customer_id "
            "values, seed 42</td>") in page and "test 0.2" not in page
    assert ("the net dollar_value a customer spends over the 273 days after a cut-off, floored at 0. The model is "
            "applied at calibration_end 1997-09-30 and learned from rows at 1997-07-01, each labelled with the spend "
            "from its cut-off to calibration_end scaled to 273 days. A prediction is the expected spend") in page
    assert split_text(load_use_case("churn")) == "stratified: test 0.2 (seeded), valid 0.2, seed 42"


def test_the_card_reads_as_sentences_with_and_without_sensitive_attributes(package: Path, toy_use_case):
    from flowline.components.package.model_card import model_card, model_card_html
    from flowline.package.format import CARD_HTML

    page = (package / CARD_HTML).read_text()
    assert ("Decision threshold: 0.3000, the one with the lowest business cost on out-of-fold predictions. The test "
            "metrics above are measured at this threshold.</p>") in page
    assert "at this one" not in page
    assert "No sensitive attributes are declared, so fairness is not measured for any group." in page
    assert "no attribute" not in page
    judged = toy_use_case.model_copy(update={"sensitive_attributes": ["plan", "age"]})
    evaluation = json.loads((package / "evaluation.json").read_text())
    evaluation["fairness"]["mitigation"] = {"randomized": True, "attributes": ["group"]}
    evaluation["fairness"]["applied"] = True
    lineage = json.loads((package / "lineage.json").read_text())
    card = model_card(judged, evaluation, EXPLANATION, lineage, {"members": []})
    assert "Fairness is measured only for plan, age; other groups are not checked." in card["limitations"]
    assert ("The test metrics above are measured at this threshold; the served decisions use per-group thresholds "
            "instead (see Fairness).") in model_card_html(card)


# Forged packages (issue 17): each is refused by verify with a message naming what is wrong.
KEY, OTHER_KEY = "the-signing-key", "someone-elses-key"


def forge(package: Path, name: str, text: str) -> None:
    """Edit a file and rewrite its hash in the manifest, as a forger without the key would."""
    (package / name).write_text(text)
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    manifest["files"][name] = sha256_of_file(package / name)
    (package / MANIFEST_FILE).write_text(json.dumps(manifest))


def version_of(package: Path) -> str:
    """What the version of the package's manifest content is: the sha256 of its format, name and files."""
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    return hashlib.sha256(canonical({k: manifest[k] for k in ("format", "name", "files")})).hexdigest()[:12]


def test_the_version_is_the_hash_of_the_manifest_content(package: Path):
    manifest = verify(package)
    assert manifest["format"] == FORMAT and manifest["version"] == version_of(package)


def test_an_edited_file_with_its_hash_updated_is_refused_by_version(package: Path):
    stated = verify(package)["version"]
    forge(package, "model/model.json", '{"members": [{"family": "linear", "weight": 1.0}], "bias": 40}')
    recomputed = version_of(package)
    with pytest.raises(PackageError, match=f"states version {stated}, but its content hashes to {recomputed}"):
        verify(package)


def test_keyless_use_verifies_with_a_warning_and_a_key_refuses_an_unsigned_package(package: Path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.warns(NoSigningKeyWarning, match=r"no signing key \(\$FLOWLINE_SIGNING_KEY\)"):
        manifest = verify(package)
    assert SIGNATURE not in manifest
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(PackageError, match=r"the manifest is unsigned and a signing key is set \(\$FLOWLINE_SIGNING_KEY"):
        verify(package)


def test_a_notebook_opening_a_package_again_is_told_of_the_missing_key_once(package: Path, monkeypatch):
    """Python shows a warning once per place it comes from, until the filters change: Package.open once changed them
    to keep its private copy's check quiet, and a notebook was told the same thing on every open (7 times)."""
    import subprocess
    import sys

    monkeypatch.delenv(KEY_ENV, raising=False)
    opens = "from flowline.package.format import Package\nfor _ in range(3):\n    Package.open(%r)\n" % str(package)
    said = subprocess.run([sys.executable, "-c", opens], capture_output=True, text=True, check=True).stderr
    assert said.count("NoSigningKeyWarning") == 1, said
    opened = Package.open(package)  # and shows the folder it was opened from, not its private copy
    assert repr(opened) == f"Package(toy {opened.version}, {len(opened.manifest['files'])} files, from {package})"


def test_packaging_signs_with_the_key_and_verify_checks_it(package: Path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    signed = write_manifest(package, "toy")
    assert signed[SIGNATURE]["algorithm"] == "hmac-sha256"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checked signature: no warning
        assert verify(package)["version"] == signed["version"]
    monkeypatch.setenv(KEY_ENV, OTHER_KEY)
    with pytest.raises(PackageError, match="signature does not match the signing key .*signed with another key"):
        verify(package)


def test_a_signature_that_is_not_ascii_is_refused_not_a_crash(package: Path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    manifest = write_manifest(package, "toy")
    manifest[SIGNATURE]["value"] = "é" * 64
    (package / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match="signature does not match"):
        verify(package)


def test_a_forgery_that_recomputes_the_version_fails_the_signature(package: Path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    old_signature = write_manifest(package, "toy")[SIGNATURE]
    forge(package, "evaluation.json", json.dumps({**EVALUATION, "gates_passed": True}))
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    manifest["version"] = version_of(package)
    (package / MANIFEST_FILE).write_text(json.dumps(manifest))  # hashes and version consistent, old signature
    with pytest.raises(PackageError, match="signature does not match"):
        verify(package)
    monkeypatch.delenv(KEY_ENV)
    write_manifest(package, "toy")  # re-listed without the key: unsigned
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(PackageError, match="the manifest is unsigned"):
        verify(package)
    assert old_signature["value"] != json.loads((package / MANIFEST_FILE).read_text()).get(SIGNATURE, {}).get("value")


@pytest.mark.parametrize("name", ["model/training.json", "model"])
def test_a_symbolic_link_is_refused_even_when_listed(package: Path, name: str):
    """A listed file, or a folder, replaced by a link to /etc/passwd (or /etc), with the manifest rewritten."""
    target = package / name
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to("/etc/passwd" if name.endswith(".json") else "/etc")
    with pytest.raises(PackageError, match=f"{name} is a symbolic link; a package holds only regular files"):
        write_manifest(package, "toy")
    with pytest.raises(PackageError, match=f"{name} is a symbolic link"):
        verify(package)


@pytest.mark.parametrize("name", ["/etc/passwd", "../../etc/passwd", "model/../../x", "./model/model.json"])
def test_a_manifest_entry_outside_the_package_is_refused(package: Path, name: str):
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    manifest["files"][name] = "0" * 64
    (package / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match=f"files entry '{re.escape(name)}' is not a relative path inside"):
        verify(package)


@pytest.mark.parametrize("member_file", ["/etc/passwd", "../../../etc/passwd", "../feature_set.json", "missing.json"])
def test_a_model_member_path_outside_the_model_folder_is_refused(package: Path, member_file: str):
    (package / "model" / "model.json").write_text(json.dumps(
        {"members": [{"family": "linear", "weight": 1.0, "files": ["linear.json"]},
                     {"family": "xgboost", "weight": 1.0, "files": [member_file]}]}))
    (package / "model" / "linear.json").write_text("{}")
    write_manifest(package, "toy")  # hashes and version consistent: only the path is wrong
    with pytest.raises(PackageError, match=re.escape("model/model.json members[1].files")):
        verify(package)


@pytest.mark.parametrize("x_ref", ["/tmp/payload.npy", "../../outside.npy", "../detector/x_ref.npy", "gone.npy"])
def test_a_detector_config_whose_reference_is_outside_the_package_is_refused(package: Path, x_ref: str):
    config = package / "drift" / "detector" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "x_ref": x_ref}))
    write_manifest(package, "toy")
    with pytest.raises(PackageError, match=re.escape("drift/detector/config.json x_ref")):
        verify(package)


def test_the_dashboards_card_names_its_package_version_and_the_reports_it_cannot_link(package: Path):
    """The package's card links its reports beside it; the dashboard shows the card alone, where links led nowhere,
    and where only the page can say which package version it describes (the version hashes the card inside)."""
    from flowline.components.package.model_card import model_card_html
    from flowline.package.format import CARD_HTML, CARD_JSON

    card = json.loads((package / CARD_JSON).read_text())
    version = json.loads((package / MANIFEST_FILE).read_text())["version"]
    assert card["reports"]
    in_package, alone = (package / CARD_HTML).read_text(), model_card_html(card, package_version=version)
    for path in card["reports"].values():
        assert (package / path).is_file() and f'<a href="{path}">' in in_package
        assert f"<code>{path}</code>" in alone and f'href="{path}"' not in alone
    assert f"<td>package version</td><td>{version}</td>" in alone and "package version" not in in_package


def test_a_card_says_what_its_use_case_does_not_state_rather_than_leave_it_empty(package: Path, toy_use_case):
    """A use case drafted by `flowline init` states neither its description nor its intended use: the card
    rendered two empty paragraphs under its title and "Intended use"."""
    from flowline.components.package.model_card import model_card, model_card_html

    unstated = toy_use_case.model_copy(update={"description": "", "intended_use": ""})
    lineage = json.loads((package / "lineage.json").read_text())
    evaluation = json.loads((package / "evaluation.json").read_text())
    page = model_card_html(model_card(unstated, evaluation, EXPLANATION, lineage, {"members": []}))
    assert "<p>Not stated by the use case (description).</p>" in page
    assert "<h2>Intended use</h2><p>Not stated by the use case (intended_use).</p>" in page.replace("\n", "")
    assert "<p></p>" not in page
