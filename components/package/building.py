"""The package step's work: assemble the package folder from the earlier steps' outputs, write
its model card and manifest, and verify it (the format: flowline/package/format.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from flowline import fitted_rows
from flowline.code_version import code_version, environment
from flowline.components.package.model_card import model_card, model_card_html
from flowline.datasets import sha256_of_file
from flowline.evaluation_report import report_markdown
from flowline.models.ensemble import family_weights
from flowline.package.format import (CARD_HTML, CARD_JSON, DRIFT_DIR, EVALUATION_FILE, FEATURE_SET_FILE, LINEAGE_FILE,
                                     MODEL_DIR, REPORT_FILES, REPORTS_DIR, USE_CASE_FILE, verify, write_manifest)
from flowline.use_case import UseCase


def build_package(
    destination: str | Path,
    use_case: UseCase,
    model_dir: str | Path,
    feature_set_file: str | Path,
    evaluation_file: str | Path,
    dataset: dict,
    drift_dir: str | Path,
    explanation_file: str | Path,
    reports: dict[str, str | Path] | None = None,
    run: dict | None = None,
    fitted: np.ndarray | None = None,
) -> dict:
    """Assemble the package folder and write its manifest; return the manifest.

    `dataset` describes the ingested data: source, source_sha256, row counts and the columns the
    contract does not declare (not used);
    `explanation_file` is the explain step's summary, for the model card;
    `run` names the run that built it and what it overrode in the use case (`run_identity`), for the lineage;
    `reports` maps names of REPORT_FILES to the steps' report files, copied to reports/ under those
    names so that they open by their extension (KFP names an artifact's file after its output, with none).
    The evaluation report is written again from `evaluation_file` (the decision after the bias step's
    fairness gates), not copied: the evaluate step's report knows only the quality gates.
    `fitted`: the fingerprints of the train + valid rows (flowline/fitted_rows.py), for a later champion comparison.
    """
    out = Path(destination)
    out.mkdir(parents=True, exist_ok=True)
    evaluation = json.loads(Path(evaluation_file).read_text())  # the decided one, which the report and card show
    for name, source in (reports or {}).items():
        if name not in REPORT_FILES:
            raise ValueError(f"unknown report {name!r}; expected one of {', '.join(REPORT_FILES)}")
        (out / REPORTS_DIR).mkdir(exist_ok=True)
        if name == "evaluation":
            (out / REPORTS_DIR / REPORT_FILES[name]).write_text(report_markdown(evaluation, use_case))
        else:
            shutil.copyfile(source, out / REPORTS_DIR / REPORT_FILES[name])
    shutil.copytree(model_dir, out / MODEL_DIR, dirs_exist_ok=True)
    shutil.copyfile(feature_set_file, out / FEATURE_SET_FILE)
    shutil.copyfile(evaluation_file, out / EVALUATION_FILE)
    shutil.copytree(drift_dir, out / DRIFT_DIR, dirs_exist_ok=True)
    (out / USE_CASE_FILE).write_text(use_case.model_dump_json(indent=1))
    if fitted is not None:
        fitted_rows.save(out / fitted_rows.FITTED_ROWS_FILE, fitted)
    feature_set = json.loads((out / FEATURE_SET_FILE).read_text())
    lineage = {
        "use_case": use_case.name,
        "dataset": dataset,
        "feature_set": {"file": FEATURE_SET_FILE, "version": feature_set["version"]},
        "model": {"dir": MODEL_DIR, "files": {path.name: sha256_of_file(path)
                                               for path in sorted((out / MODEL_DIR).iterdir())}},
        "code": code_version(),
        "environment": environment(),
        "run": run or {},
        # distinct fingerprints: rows alike in every hashed column (fraud's 14 repeated rows) share one
        "fitted_rows": {"file": fitted_rows.FITTED_ROWS_FILE, "fingerprints": len(fitted)} if fitted is not None
        else None,
    }
    (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=1))
    members = json.loads((out / MODEL_DIR / "model.json").read_text())["members"]
    card = model_card(use_case, evaluation, json.loads(Path(explanation_file).read_text()), lineage,
                      {"members": family_weights(members)},
                      tuple(name for name in REPORT_FILES if name in (reports or {})))
    (out / CARD_JSON).write_text(json.dumps(card, indent=1))
    (out / CARD_HTML).write_text(model_card_html(card))
    return write_manifest(out, use_case.name)


def package_files(
    use_case: UseCase,
    destination: str,
    model_dir: str,
    feature_set_file: str,
    evaluation_file: str,
    dataset_metadata: dict,
    drift_dir: str,
    explanation_file: str,
    reports: dict[str, str] | None = None,
    run: dict | None = None,
    fitted_files: tuple[str, ...] = (),
) -> dict:
    """Build and verify the package; return what its artifact metadata should show. `fitted_files`: the train
    and valid rows, whose fingerprints the package keeps."""
    # KFP carries metadata numbers as floats; counts are whole.
    dataset = {key: dataset_metadata[key] for key in ("source", "source_sha256")}
    dataset.update({key: int(dataset_metadata[key]) for key in ("rows_in", "rows_kept", "rows_quarantined")})
    dataset["undeclared_columns"] = list(dataset_metadata.get("undeclared_columns", []))
    columns = fitted_rows.fingerprint_columns(use_case)  # only those: the rows' other columns are not needed
    fitted = fitted_rows.fitted_on((pd.read_parquet(path, columns=columns) for path in fitted_files), use_case) \
        if fitted_files else None
    build_package(destination, use_case, model_dir, feature_set_file, evaluation_file, dataset, drift_dir,
                  explanation_file, reports, run, fitted)
    manifest = verify(destination)
    evaluation = json.loads(Path(evaluation_file).read_text())
    print(f"package: {destination} version {manifest['version']}, {len(manifest['files'])} files, verified")
    return {"use_case": use_case.name, "version": manifest["version"], "gates_passed": evaluation["gates_passed"],
            "decision": evaluation["champion_challenger"]["decision"]}


def run_identity(name: str, run_id: str, trials: int, tuning_backend: str) -> dict:
    """The lineage's `run`: the pipeline run's name and id (KFP's, or kfp.local's), and the overrides of the use
    case it ran with (use_case.json holds the use case as written; model/training.json what each family ran)."""
    return {"name": name, "id": run_id, "trials": trials or None, "tuning_backend": tuning_backend or None}
