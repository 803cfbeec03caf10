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


@pytest.fixture
def package(tmp_path: Path, toy_use_case) -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text('{"learner": {}}')
    (model_dir / "training.json").write_text("{}")
    (tmp_path / "fs.json").write_text(json.dumps({"format": "flowline.featureset/v1", "version": "f00d"}))
    (tmp_path / "evaluation.json").write_text(json.dumps({"gates_passed": True,
                                                           "champion_challenger": {"decision": "promote"}}))
    (tmp_path / "drift" / "detector").mkdir(parents=True)
    (tmp_path / "drift" / "detector" / "config.toml").write_text("name = 'TabularDrift'\n")
    destination = tmp_path / "package"
    build_package(destination, toy_use_case, model_dir, tmp_path / "fs.json", tmp_path / "evaluation.json", DATASET,
                  tmp_path / "drift")
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
