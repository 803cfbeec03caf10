"""Helpers for the serving tests: packages built in-process from the plain step functions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from flowline.components.bias.fairness import bias_files
from flowline.components.customers.rows import customer_rows_files
from flowline.customer_rows import customer_rows_use_case
from flowline.drift import fit_drift_files
from flowline.components.evaluate.evaluation import evaluate_files
from flowline.components.explain.explanation import explain_files
from flowline.components.features.fitting import engineer_features_files
from flowline.components.ingest.ingestion import ingest_to_files
from flowline.components.package.building import package_files
from flowline.components.split.parts import split_files
from flowline.components.train.training import train_files
from flowline import audit
from flowline.inference_services.local_server import running_server
from flowline.inference_services.options import REPOSITORY_TOKEN_ENV
from flowline.pipelines.local_run import record_run, summarize
from flowline.tuning import tune_files
from flowline.use_case import FAMILIES, UseCase
from flowline.use_case_loader import parse_use_case

MAX_BATCH = 64
MAX_EXPLAIN_ROWS = 40  # the shared server's explain limit: below its batch limit, to test both; churn_test_rows fit
REPOSITORY_TOKEN = "serving-tests-repository-token"
AUTHORIZED = {"Authorization": f"Bearer {REPOSITORY_TOKEN}"}  # what load and unload require


def repository_env() -> dict[str, str]:
    """This environment, plus the token that enables a server's model repository routes (load, unload)."""
    return {**os.environ, REPOSITORY_TOKEN_ENV: REPOSITORY_TOKEN}


def build_package(use_case: UseCase, folder: Path, trials: int, champion: str = "") -> Path:
    """ingest (-> customer rows) -> split -> features -> tune (each family) -> train -> evaluate -> bias ->
    explain -> drift -> package, without KFP."""
    folder.mkdir(parents=True, exist_ok=True)
    f = {name: str(folder / name) for name in
         ("data.parquet", "quarantine.parquet", "profile.md", "rows.parquet", "rows.md", "train", "valid", "test",
          "fs.json", "features.md", "model", "holdout", "eval.json", "decided.json", "explanation.json", "drift", *(f"{family}.json" for family in FAMILIES))}
    counts = ingest_to_files(use_case, "", f["data.parquet"], f["quarantine.parquet"], f["profile.md"])
    rows = f["data.parquet"]
    if use_case.transactions:
        customer_rows_files(use_case, rows, f["rows.parquet"], f["rows.md"])
        use_case, rows = customer_rows_use_case(use_case), f["rows.parquet"]
    split_files(use_case, rows, {k: f[k] for k in ("train", "valid", "test")})
    engineer_features_files(use_case, f["train"], f["valid"], f["fs.json"], f["features.md"])
    searches = {family: f[f"{family}.json"] for family in FAMILIES}
    for family, result in searches.items():
        tune_files(use_case, family, trials, "optuna", f["train"], f["valid"], f["fs.json"], result)
    train_files(use_case, f["train"], f["valid"], f["fs.json"], searches, f["model"], f["holdout"])
    evaluate_files(use_case, f["model"], f["fs.json"], f["holdout"], f["test"], f["eval.json"], champion)
    bias_files(use_case, f["model"], f["fs.json"], f["holdout"], f["test"], f["eval.json"], f["decided.json"])
    explain_files(use_case, f["model"], f["fs.json"], f["train"], f["test"], f["explanation.json"])
    fit_drift_files(use_case, f["train"], f["valid"], f["fs.json"], f["drift"])
    package_files(use_case, str(folder / "package"), f["model"], f["fs.json"], f["decided.json"], counts, f["drift"],
                  f["explanation.json"], fitted_files=(f["train"], f["valid"]))
    return folder / "package"


CARD_COMPONENTS = 10  # the card use case reads V1..V10 of the 28, which keeps its drift calibration short


def samples(url: str, name: str) -> dict[tuple, float]:
    """The samples named `name` on /metrics, by their labels."""
    exported = httpx.get(f"{url}/metrics").text
    return {tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(exported) for sample in family.samples
            if sample.name == name}


def card_use_case(data_home: Path) -> UseCase:
    columns = {"Time": {"type": "number"}, "Amount": {"type": "number", "min": 0}}
    columns.update({f"V{i}": {"type": "number"} for i in range(1, CARD_COMPONENTS + 1)})
    return parse_use_case({
        "name": "card-fraud", "task": "binary", "data": {"dataset": "creditcard_fraud_sample"},
        "label": {"column": "Class", "positive": "1", "values": ["0", "1"]}, "columns": columns,
        "costs": {"false_negative": 100, "false_positive": 5},
    })


def records_of(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON would carry them: NaN becomes null, and a number keeps every digit (to_json keeps 10, and a
    feature computed from the cut value can differ from the in-process one in its last float32 bit)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return json.loads(json.dumps(rows, default=str))


def served_over_http(package: Path, rows: pd.DataFrame, workers: int = 1) -> tuple[np.ndarray, list[dict]]:
    """`package` served by `flowline serve` on loopback: v1 probabilities of `rows` (float32, as served) and v1
    explanations of its first 5, both answered 200."""
    name = json.loads((package / "use_case.json").read_text())["name"]
    with running_server([str(package)], workers=workers) as url:
        predicted = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": records_of(rows)}, timeout=30)
        explained = httpx.post(f"{url}/v1/models/{name}:explain", json={"instances": records_of(rows.head(5))},
                               timeout=30)
    assert predicted.status_code == 200, predicted.text
    assert explained.status_code == 200, explained.text
    probabilities = np.array([p["probability"] for p in predicted.json()["predictions"]], dtype=np.float32)
    return probabilities, explained.json()["explanations"]


def assert_served_as_in_process(package: Path, loaded) -> None:
    """20 of the package's test rows served over HTTP score as `loaded` (its LoadedPackage) does in process, and
    the first 5's explanations give its margins and add up to them."""
    rows = pd.read_parquet(package.parent / "test").head(20)[loaded.use_case.feature_columns]
    served, explanations = served_over_http(package, rows)
    assert np.array_equal(served, loaded.predict(rows))
    margins = loaded.model.margin(loaded.feature_set.transform(rows.head(5)))
    for explanation, margin in zip(explanations, margins, strict=True):
        assert explanation["margin"] == pytest.approx(margin, abs=1e-9)
        assert explanation["base_value"] + sum(explanation["contributions"].values()) == pytest.approx(margin, abs=1e-6)


V2_NUMERIC = {"integer": "INT64", "number": "FP64"}  # a declared numeric column's v2 datatype


def column_tensors(use_case: UseCase, frame: pd.DataFrame, columns) -> list[dict]:
    """One Open Inference Protocol v2 tensor per raw column, of the column's declared type (NaN becomes null)."""
    tensors = []
    for column in columns:
        spec, values = use_case.columns[column], frame[column]
        if spec.is_numeric:
            datatype = V2_NUMERIC[spec.type]
            data = [None if np.isnan(v) else (int(v) if spec.type == "integer" else float(v)) for v in values]
        else:
            datatype, data = "BYTES", values.tolist()
        tensors.append({"name": column, "shape": [len(frame)], "datatype": datatype, "data": data})
    return tensors


def recorded(runs: Path, package: Path, use_case, run: str) -> Path:
    """A copy of a real package in its own run folder, recorded as `flowline run` records it
    (local_run.record_run over local_run.summarize), with the summary.json a run writes."""
    run_dir = runs / run
    copy = shutil.copytree(package, run_dir / "package")
    summary = summarize(use_case, copy, run_dir / "quarantine", run_dir, wall_seconds=1.5)
    record_run(runs / audit.AUDIT_FILE, {"use_case": use_case.name, "run_dir": str(run_dir)}, summary)
    reports = {**summary["reports"], "explanation": str(run_dir / "explain.html")}  # the package's, and the run's
    (run_dir / "summary.json").write_text(json.dumps({**summary, "reports": reports}))
    return copy
