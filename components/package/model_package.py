"""Model packages: a folder with every file listed by sha256 in manifest.json.

A package holds the model folder (model.json and one native file per member, plus
training.json), the FeatureSet, the evaluation (metrics with intervals, threshold,
quality and fairness gates, any fairness mitigation, the champion/challenger
decision), the drift detector, the use case, the lineage (dataset sha256 ->
FeatureSet version -> model files) and the model card (model_card.py), JSON and HTML. `verify` refuses a package whose
files do not match the manifest, before anything is loaded; `PackagedModel.load` only
opens a verified one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from flowline import __version__
from flowline.components.features.feature_set import FeatureSet
from flowline.components.package.model_card import CARD_HTML, CARD_JSON, model_card, model_card_html
from flowline.components.train.ensemble import Ensemble
from flowline.datasets import sha256_of_file
from flowline.pipelines.use_case import UseCase

FORMAT = "flowline.package/v2"
MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"
FEATURE_SET_FILE = "feature_set.json"
EVALUATION_FILE = "evaluation.json"
USE_CASE_FILE = "use_case.json"
LINEAGE_FILE = "lineage.json"
DRIFT_DIR = "drift"


class PackageError(ValueError):
    """A package is incomplete or its files do not match its manifest."""


def build_package(
    destination: str | Path,
    use_case: UseCase,
    model_dir: str | Path,
    feature_set_file: str | Path,
    evaluation_file: str | Path,
    dataset: dict,
    drift_dir: str | Path,
    explanation_file: str | Path,
) -> dict:
    """Assemble the package folder and write its manifest; return the manifest.

    `dataset` describes the ingested data: source, source_sha256 and row counts;
    `explanation_file` is the explain step's summary, for the model card.
    """
    out = Path(destination)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, out / MODEL_DIR, dirs_exist_ok=True)
    shutil.copyfile(feature_set_file, out / FEATURE_SET_FILE)
    shutil.copyfile(evaluation_file, out / EVALUATION_FILE)
    shutil.copytree(drift_dir, out / DRIFT_DIR, dirs_exist_ok=True)
    (out / USE_CASE_FILE).write_text(use_case.model_dump_json(indent=1))
    feature_set = json.loads((out / FEATURE_SET_FILE).read_text())
    lineage = {
        "use_case": use_case.name,
        "dataset": dataset,
        "feature_set": {"file": FEATURE_SET_FILE, "version": feature_set["version"]},
        "model": {"dir": MODEL_DIR, "files": {path.name: sha256_of_file(path)
                                               for path in sorted((out / MODEL_DIR).iterdir())}},
        "flowline_version": __version__,
    }
    (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=1))
    members = json.loads((out / MODEL_DIR / "model.json").read_text())["members"]
    card = model_card(use_case, json.loads((out / EVALUATION_FILE).read_text()),
                      json.loads(Path(explanation_file).read_text()), lineage,
                      {"members": [{"family": m["family"], "weight": m["weight"]} for m in members]})
    (out / CARD_JSON).write_text(json.dumps(card, indent=1))
    (out / CARD_HTML).write_text(model_card_html(card))
    return write_manifest(out, use_case.name)


def _files_of(package: Path) -> dict[str, str]:
    return {
        str(path.relative_to(package)): sha256_of_file(path)
        for path in sorted(package.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }


def write_manifest(package: Path, name: str) -> dict:
    files = _files_of(package)
    version = hashlib.sha256("".join(f"{k}:{v}\n" for k, v in files.items()).encode()).hexdigest()[:12]
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    (package / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    return manifest


def verify(package_dir: str | Path) -> dict:
    """Return the manifest when every file matches it; raise PackageError naming the first problem.

    Refused: a missing manifest, a listed file that is missing or altered, a file the
    manifest does not list. Model files can execute code when loaded, so nothing in an
    unverified package is ever opened.
    """
    package = Path(package_dir)
    manifest_path = package / MANIFEST_FILE
    if not manifest_path.is_file():
        raise PackageError(f"{package} is not a model package: {MANIFEST_FILE} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as error:
        raise PackageError(f"{manifest_path} is unreadable: {error}") from None
    if manifest.get("format") != FORMAT:
        raise PackageError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    actual = _files_of(package)
    for name, expected in listed.items():
        if name not in actual:
            raise PackageError(f"package {package}: {name} is listed in the manifest but missing")
        if actual[name] != expected:
            raise PackageError(
                f"package {package}: {name} has sha256 {actual[name]}, the manifest says {expected}; refusing it"
            )
    unlisted = sorted(set(actual) - set(listed))
    if unlisted:
        raise PackageError(f"package {package}: {unlisted[0]} is not listed in the manifest; refusing it")
    return manifest


def package_files(
    use_case: UseCase,
    destination: str,
    model_dir: str,
    feature_set_file: str,
    evaluation_file: str,
    dataset_metadata: dict,
    drift_dir: str,
    explanation_file: str,
) -> dict:
    """Build and verify the package; return what its artifact metadata should show."""
    # KFP carries metadata numbers as floats; counts are whole.
    dataset = {key: dataset_metadata[key] for key in ("source", "source_sha256")}
    dataset.update({key: int(dataset_metadata[key]) for key in ("rows_in", "rows_kept", "rows_quarantined")})
    build_package(destination, use_case, model_dir, feature_set_file, evaluation_file, dataset, drift_dir,
                  explanation_file)
    manifest = verify(destination)
    evaluation = json.loads(Path(evaluation_file).read_text())
    print(f"package: {destination} version {manifest['version']}, {len(manifest['files'])} files, verified")
    return {"use_case": use_case.name, "version": manifest["version"], "gates_passed": evaluation["gates_passed"],
            "decision": evaluation["champion_challenger"]["decision"]}


@dataclass(frozen=True)
class PackagedModel:
    """What a verified package predicts with: its use case, FeatureSet, model and evaluation."""

    version: str
    created_at: str
    use_case: UseCase
    feature_set: FeatureSet
    model: Ensemble
    evaluation: dict

    @classmethod
    def load(cls, package_dir: str | Path) -> PackagedModel:
        """Verify first; only then read anything (model files can run code when loaded)."""
        manifest = verify(package_dir)
        package = Path(package_dir)
        return cls(
            version=manifest["version"], created_at=manifest["created_at"],
            use_case=UseCase.model_validate_json((package / USE_CASE_FILE).read_text()),
            feature_set=FeatureSet.load(package / FEATURE_SET_FILE),
            model=Ensemble.load(package / MODEL_DIR),
            evaluation=json.loads((package / EVALUATION_FILE).read_text()),
        )

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores for a frame of raw columns: probabilities (binary) or predictions (regression)."""
        return self.model.predict(self.feature_set.transform(frame))
