"""A churn package with the lightgbm family, built by the steps themselves, served over real HTTP."""

import json
from pathlib import Path

import pytest

from flowline.inference_services.model import LoadedPackage
from flowline.package.format import verify
from serving_helpers import assert_served_as_in_process, build_package


@pytest.fixture(scope="module")
def lightgbm_package(data_home, churn, tmp_path_factory) -> Path:
    """Churn searching lightgbm and linear, two trials each, the trees reading the category codes."""
    tuning = churn.tuning.model_copy(update={"families": {"lightgbm": 2, "linear": 2}})
    features = churn.features.model_copy(update={"search": False, "native_categorical": True})
    use_case = churn.model_copy(update={"tuning": tuning, "features": features})
    return build_package(use_case, tmp_path_factory.mktemp("lightgbm"), trials=0)


def test_a_lightgbm_package_serves_the_in_process_predictions_and_additive_explanations(lightgbm_package: Path):
    manifest = verify(lightgbm_package)
    training = json.loads((lightgbm_package / "model" / "training.json").read_text())
    assert [(c["family"], c["trials"]) for c in training["candidates"]] == [("lightgbm", 2), ("linear", 2)]
    loaded = LoadedPackage.load(lightgbm_package)
    (tree,) = [m.model for m in loaded.model.members if m.family == "lightgbm"]
    assert "model/lightgbm.txt" in manifest["files"]
    codes = [i for i, name in enumerate(loaded.feature_set.feature_names) if name.startswith("code(")]
    assert codes and set(codes) <= set(tree.columns)  # the tree member reads the category codes
    assert_served_as_in_process(lightgbm_package, loaded)
