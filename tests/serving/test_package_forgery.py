"""Forged real packages (issue 17) against `flowline verify`, the model loader and the drift monitor's loader."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flowline.drift import DetectorError
from flowline.package.format import Package, PackageError, verify, write_manifest
from flowline.package.signing import KEY_ENV
from flowline.datasets import sha256_of_file
from flowline.inference_services.drift_monitor import DriftPackage
from flowline.pipelines.cli import main

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker
DETECTOR = Path("drift") / "detector"


class Payload:
    """Creates `marker` when unpickled: what a hostile reference file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def copy_of(package: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(package, tmp_path / "copy"))


def test_a_manifest_with_a_key_twice_and_a_package_of_no_files_are_refused(churn_package, tmp_path, monkeypatch):
    """Without a key anyone can rewrite a manifest; still, what `verify` passes is what a reader of the manifest
    sees, and a package that holds nothing to load is not reported as verified."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    package = copy_of(churn_package, tmp_path)
    text = (package / "manifest.json").read_text()
    (package / "manifest.json").write_text('{"name": "forged", ' + text.lstrip()[1:])
    with pytest.raises(PackageError, match="key 'name' appears more than once in an object"):
        verify(package)
    empty = tmp_path / "empty"
    empty.mkdir()
    write_manifest(empty, "churn")
    with pytest.raises(PackageError, match="it has no model/model.json, which every package holds"):
        verify(empty)


def test_flowline_verify_refuses_the_bias_forgery_naming_both_versions(churn_package, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    package = copy_of(churn_package, tmp_path)
    stated = json.loads((package / "manifest.json").read_text())["version"]
    assert main(["verify", str(package)]) == 0
    out, err = capsys.readouterr()
    assert f"version {stated}" in out and "signature not checked" in out and "warning: " in err
    model = package / "model" / "model.json"
    model.write_text(json.dumps({**json.loads(model.read_text()), "bias": 40.0}))
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["files"]["model/model.json"] = sha256_of_file(model)
    (package / "manifest.json").write_text(json.dumps(manifest))
    assert main(["verify", str(package)]) == 1
    err = capsys.readouterr().err
    assert f"states version {stated}, but its content hashes to " in err
    with pytest.raises(PackageError, match=f"states version {stated}"):
        Package.open(package)


def test_flowline_verify_with_a_key_refuses_unsigned_and_wrongly_signed_packages(churn_package, tmp_path, capsys,
                                                                                 monkeypatch):
    package = copy_of(churn_package, tmp_path)
    monkeypatch.setenv(KEY_ENV, "the-signing-key")
    assert main(["verify", str(package)]) == 1
    assert "the manifest is unsigned and a signing key is set" in capsys.readouterr().err
    write_manifest(package, "churn")
    assert main(["verify", str(package)]) == 0
    out, err = capsys.readouterr()
    assert "signature checked" in out and err == ""
    monkeypatch.setenv(KEY_ENV, "another-key")
    assert main(["verify", str(package)]) == 1
    assert "signature does not match the signing key" in capsys.readouterr().err


def test_a_listed_symlink_to_etc_passwd_is_refused(churn_package, tmp_path, capsys):
    package = copy_of(churn_package, tmp_path)
    (package / "use_case.json").unlink()
    (package / "use_case.json").symlink_to("/etc/passwd")
    assert main(["verify", str(package)]) == 1
    assert "use_case.json is a symbolic link" in capsys.readouterr().err


def test_the_drift_monitor_refuses_a_detector_reference_outside_the_package(churn_package, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    package = copy_of(churn_package, tmp_path)
    outside = tmp_path / "payload.npy"
    np.save(outside, np.array([Payload(tmp_path / "code-ran")], dtype=object), allow_pickle=True)
    config = package / DETECTOR / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "x_ref": "../../../payload.npy"}))
    write_manifest(package, "churn")  # consistent hashes and version: only the path gives it away
    with pytest.raises(PackageError, match=r"drift/detector/config.json x_ref '\.\./\.\./\.\./payload.npy' is not a "
                                           r"relative path inside the package"):
        DriftPackage.load(package)
    assert not (tmp_path / "code-ran").exists()


def test_the_drift_monitor_never_unpickles_a_reference_inside_the_package(churn_package, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    package = copy_of(churn_package, tmp_path)
    np.save(package / DETECTOR / "x_ref.npy", np.array([Payload(tmp_path / "code-ran")], dtype=object),
            allow_pickle=True)
    write_manifest(package, "churn")
    with pytest.raises(DetectorError, match="x_ref.npy is not a numeric .npy array .pickled data is refused"):
        DriftPackage.load(package)
    assert not (tmp_path / "code-ran").exists()
    genuine = json.loads((churn_package / "manifest.json").read_text())["version"]
    assert DriftPackage.load(churn_package).version == genuine


@pytest.mark.parametrize("load", ["model server", "drift monitor"])
def test_a_load_reads_the_copy_it_verified_whatever_the_folder_holds_meanwhile(
        churn_package, tmp_path, monkeypatch, load):
    """Files changed in the folder after their check, during a load (a new version copied over it file by file,
    or a model file swapped in and back by a writer without the signing key), are not what gets served: the
    loader reads its private copy of what it verified, all of one version."""
    from flowline.features.feature_set import FeatureSet
    from flowline.scoring import Scorer

    monkeypatch.delenv(KEY_ENV, raising=False)
    package = copy_of(churn_package, tmp_path)
    genuine = json.loads((package / "manifest.json").read_text())
    threshold = json.loads((package / "evaluation.json").read_text())["threshold"]
    newer = Path(shutil.copytree(churn_package, tmp_path / "newer"))
    evaluation = json.loads((newer / "evaluation.json").read_text())
    (newer / "evaluation.json").write_text(json.dumps({**evaluation, "threshold": 0.99}))
    write_manifest(newer, "churn")
    read_feature_set = FeatureSet.load

    def and_the_folder_changes(path):  # after the check, before the evaluation and the model are read
        for name in ("evaluation.json", "manifest.json"):
            shutil.copy(newer / name, package / name)
        return read_feature_set(path)

    monkeypatch.setattr(FeatureSet, "load", staticmethod(and_the_folder_changes))
    loaded = Scorer.open(package) if load == "model server" else DriftPackage.load(package)
    assert loaded.version == genuine["version"]
    if load == "model server":
        assert loaded.threshold == threshold != 0.99
    monkeypatch.setattr(FeatureSet, "load", staticmethod(read_feature_set))
    assert Scorer.open(package).threshold == 0.99  # opened again: the new version, whole


def test_a_file_changed_while_the_package_is_copied_for_loading_is_refused_naming_the_folder(
        churn_package, tmp_path, monkeypatch):
    from flowline.package import format as package_format

    monkeypatch.delenv(KEY_ENV, raising=False)
    package = copy_of(churn_package, tmp_path)
    verified, checked = package_format._verified, []

    def then_a_file_changes(path, say_unkeyed):  # the folder checked, then changed before its copy is made
        checked.append(path)
        manifest = verified(path, say_unkeyed)
        if len(checked) == 1:
            evaluation = json.loads((package / "evaluation.json").read_text())
            (package / "evaluation.json").write_text(json.dumps({**evaluation, "threshold": 0.99}))
        return manifest

    monkeypatch.setattr(package_format, "_verified", then_a_file_changes)
    with pytest.raises(PackageError, match=f"^{package} changed while it was read: package {package}: "
                                           "evaluation.json has sha256 "):
        Package.open(package)
    assert len(checked) == 2 and checked[1] != package  # the copy was checked, and refused


def test_a_link_put_in_after_the_check_is_not_followed_and_a_copy_that_cannot_be_made_is_named(
        churn_package, tmp_path, monkeypatch):
    from flowline.package import format as package_format

    monkeypatch.delenv(KEY_ENV, raising=False)
    package = copy_of(churn_package, tmp_path)
    verify = package_format.verify

    def then_a_link(path):  # a read through it would never end
        manifest = verify(path)
        (package / "evaluation.json").unlink()
        (package / "evaluation.json").symlink_to("/dev/zero")
        return manifest

    monkeypatch.setattr(package_format, "verify", then_a_link)
    with pytest.raises(PackageError, match=f"^{package} changed while it was read: evaluation.json: "):
        Package.open(package)
    monkeypatch.undo()
    monkeypatch.delenv(KEY_ENV, raising=False)
    fresh = copy_of(churn_package, tmp_path / "again")
    monkeypatch.setattr(package_format.tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    with pytest.raises(PackageError, match=f"^{fresh}: no private copy can be made in {tmp_path}/no-such-folder"):
        Package.open(fresh)
