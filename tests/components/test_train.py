import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from flowline.components.features.feature_set import FeatureSet
from flowline.components.train.training import MODEL_FILE, TRAINING_FILE, train_files
from flowline.pipelines.use_case import UseCase


def make_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    plan = rng.choice(["basic", "pro"], n)
    signal = 0.08 * (age - 50) + 1.5 * (plan == "pro") + rng.normal(0, 1, n)
    return pd.DataFrame({
        "id": [f"r{seed}-{i}" for i in range(n)],
        "age": age,
        "income": rng.normal(3000, 500, n),
        "plan": plan,
        "label": np.where(signal > 0.5, "yes", "no"),
    })


@pytest.fixture
def split_files(tmp_path: Path, toy_use_case: UseCase) -> dict[str, str]:
    files = {}
    for name, n, seed in (("train", 600, 1), ("valid", 200, 2)):
        files[name] = str(tmp_path / f"{name}.parquet")
        make_rows(n, seed).to_parquet(files[name])
    files["feature_set"] = str(tmp_path / "feature_set.json")
    FeatureSet.fit(pd.read_parquet(files["train"]), toy_use_case).save(files["feature_set"])
    return files


def test_trains_a_native_json_model_with_the_requested_trials(split_files, toy_use_case, tmp_path: Path):
    model_dir = tmp_path / "model"
    summary = train_files(toy_use_case, split_files["train"], split_files["valid"], split_files["feature_set"],
                          str(model_dir), trials=4)
    assert summary["trials"] == 4
    assert summary["valid_metric"] == "roc_auc" and summary["valid_score"] > 0.85
    document = json.loads((model_dir / MODEL_FILE).read_text())  # native JSON, not a pickle
    assert "learner" in document
    booster = xgb.Booster(model_file=str(model_dir / MODEL_FILE))
    assert booster.num_boosted_rounds() == summary["num_boost_round"] < toy_use_case.tuning.max_boost_rounds
    assert json.loads((model_dir / TRAINING_FILE).read_text())["feature_set_version"] == FeatureSet.load(
        split_files["feature_set"]).version


def test_the_use_case_budget_applies_without_an_override(split_files, toy_use_case, tmp_path: Path):
    use_case = toy_use_case.model_copy(update={"tuning": toy_use_case.tuning.model_copy(update={"trials": 2})})
    summary = train_files(use_case, split_files["train"], split_files["valid"], split_files["feature_set"],
                          str(tmp_path / "model"))
    assert summary["trials"] == 2


def test_regression_tasks_train_on_squared_error(tmp_path: Path):
    use_case = UseCase.model_validate({
        "name": "spend", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "columns": {"visits": {"type": "number"}},
    })
    rng = np.random.default_rng(3)
    files = {}
    for name, n in (("train", 400), ("valid", 100)):
        visits = rng.uniform(0, 10, n)
        files[name] = str(tmp_path / f"{name}.parquet")
        pd.DataFrame({"visits": visits, "spend": 3 * visits + rng.normal(0, 1, n)}).to_parquet(files[name])
    FeatureSet.fit(pd.read_parquet(files["train"]), use_case).save(tmp_path / "fs.json")
    summary = train_files(use_case, files["train"], files["valid"], str(tmp_path / "fs.json"), str(tmp_path / "m"), 3)
    assert summary["params"]["objective"] == "reg:squarederror"
    assert -summary["valid_score"] < 1.5  # RMSE near the noise level of 1
