"""A bagged churn package (each member served as its 5 fold models), built by the steps, served over real HTTP."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowline.inference_services.model import LoadedPackage
from flowline.package.format import verify
from flowline.pipelines.cli.registry import card_text
from serving_helpers import build_package, served_over_http


@pytest.fixture(scope="module")
def bagged_package(data_home, churn, tmp_path_factory) -> Path:
    """Churn (5,634 train + valid rows) with the bagging limit above its rows: xgboost and linear, one trial each."""
    tuning = churn.tuning.model_copy(update={"families": {"xgboost": 1, "linear": 1}})
    use_case = churn.model_copy(update={"tuning": tuning, "features": churn.features.model_copy(update={"search": False}),
                                        "ensemble": churn.ensemble.model_copy(update={"bag_max_rows": 10_000})})
    return build_package(use_case, tmp_path_factory.mktemp("bagged"), trials=1)


def test_a_bagged_package_lists_its_fold_models_and_serves_their_average(bagged_package: Path):
    manifest = verify(bagged_package)
    document = json.loads((bagged_package / "model" / "model.json").read_text())
    families = {m["family"] for m in document["members"]}
    assert [m["fold"] for m in document["members"]] == [1, 2, 3, 4, 5] * len(families)
    for member in document["members"]:  # every fold model's file is in the package and signed by the manifest
        assert member["files"] == [f"{member['family']}-fold{member['fold']}.json"]
        assert f"model/{member['files'][0]}" in manifest["files"]
    card = json.loads((bagged_package / "model_card.json").read_text())
    assert {m["family"]: m["folds"] for m in card["model"]["members"]} == {family: 5 for family in families}
    assert "5 fold models averaged" in (bagged_package / "model_card.html").read_text()
    assert "5 fold models averaged" in card_text(card, "v", "candidate")  # `flowline models ... show`

    loaded = LoadedPackage.load(bagged_package)
    rows = pd.read_parquet(bagged_package.parent / "test").head(20)[loaded.use_case.feature_columns]
    served, explanations = served_over_http(bagged_package, rows, workers=2)
    assert np.array_equal(served, loaded.predict(rows))
    x = loaded.feature_set.transform(rows)
    by_family = {family: np.mean([m.model.margin(x) for m in loaded.model.members if m.family == family], axis=0)
                 for family in families}
    weights = {m["family"]: m["weight"] for m in card["model"]["members"]}
    average = loaded.model.bias + sum(weights[family] * margin for family, margin in by_family.items())
    assert np.allclose(loaded.model.margin(x), average)
    for explanation, margin in zip(explanations, average[:5], strict=True):
        assert explanation["base_value"] + sum(explanation["contributions"].values()) == pytest.approx(margin, abs=1e-6)
