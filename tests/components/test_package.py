import json
from pathlib import Path

import pytest

from flowline.components.package.model_package import (
    LINEAGE_FILE,
    MANIFEST_FILE,
    PackageError,
    build_package,
    verify,
)
from flowline.datasets import sha256_of_file

DATASET = {"source": "data.csv", "source_sha256": "ab" * 32, "rows_in": 10, "rows_kept": 9, "rows_quarantined": 1}
# What evaluate + bias and explain hand the package step, cut down to what the model card reads.
GROUPS = {"group": {
    "by_group": {"a": {"rows": 50}, "b": {"rows": 40}, "c": {"rows": 3}}, "compared_groups": ["a", "b"],
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
              "champion_challenger": {"decision": "keep", "reason": "the challenger failed its fairness gates"}}
EXPLANATION = {"units": "log-odds", "rows_explained": 93, "global_importance": {"x": 0.5, "group": 0.1},
               "agreement": {"mean_spearman": 0.3, "top_column_agreement": 0.6, "top_columns": 5}}


@pytest.fixture
def package(tmp_path: Path, toy_use_case) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text('{"members": [{"family": "linear", "weight": 1.0}]}')
    (model_dir / "training.json").write_text("{}")
    (tmp_path / "fs.json").write_text(json.dumps({"format": "flowline.featureset/v1", "version": "f00d"}))
    (tmp_path / "evaluation.json").write_text(json.dumps(EVALUATION))
    (tmp_path / "explanation.json").write_text(json.dumps(EXPLANATION))
    (tmp_path / "drift" / "detector").mkdir(parents=True)
    (tmp_path / "drift" / "detector" / "config.toml").write_text("name = 'TabularDrift'\n")
    destination = tmp_path / "package"
    build_package(destination, toy_use_case, model_dir, tmp_path / "fs.json", tmp_path / "evaluation.json", DATASET,
                  tmp_path / "drift", tmp_path / "explanation.json")
    return destination


def test_a_fresh_package_verifies_and_lists_every_file(package: Path):
    manifest = verify(package)
    assert manifest["name"] == "toy"
    on_disk = {str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()} - {MANIFEST_FILE}
    assert "drift/detector/config.toml" in on_disk
    assert set(manifest["files"]) == on_disk
    assert all(manifest["files"][name] == sha256_of_file(package / name) for name in on_disk)


def test_an_altered_file_in_a_subfolder_is_refused(package: Path):
    (package / "drift" / "detector" / "config.toml").write_text("name = 'Other'\n")
    with pytest.raises(PackageError, match="drift/detector/config.toml has sha256"):
        verify(package)


def test_lineage_links_data_to_feature_set_to_model(package: Path):
    lineage = json.loads((package / LINEAGE_FILE).read_text())
    assert lineage["dataset"]["source_sha256"] == DATASET["source_sha256"]
    assert lineage["feature_set"]["version"] == "f00d"
    assert lineage["model"]["files"] == {name: sha256_of_file(package / "model" / name)
                                         for name in ("model.json", "training.json")}


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
    from flowline.components.package.model_card import CARD_HTML, CARD_JSON

    manifest = verify(package)
    assert {CARD_JSON, CARD_HTML} <= set(manifest["files"])
    card = json.loads((package / CARD_JSON).read_text())
    assert card["data"]["source_sha256"] == DATASET["source_sha256"]
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
    assert "group: groups c have fewer than 30 test rows" in limitations
    assert "LIME and SHAP agree weakly" in limitations  # mean Spearman 0.3
    page = (package / CARD_HTML).read_text()
    assert "0.8500 to 0.9600" in page and 'class="fail"' in page and "Intended use" in page
    assert "Mitigation not applied: a fairness gate fails at the single threshold" in page
    assert "<td>group</td><td>disparate_impact_ratio</td><td>0.6000</td><td></td><td>0.6000</td><td></td>" in page
