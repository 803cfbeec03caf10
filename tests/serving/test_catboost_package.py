"""A churn package with the catboost family, built by the steps themselves, served over real HTTP."""

import json
from pathlib import Path

import pytest

from flowline.inference_services.model import LoadedPackage
from flowline.package.format import verify
from serving_helpers import assert_served_as_in_process, build_package


@pytest.fixture(scope="module")
def catboost_package(data_home, churn, tmp_path_factory) -> Path:
    """Churn searching catboost alone, two trials."""
    tuning = churn.tuning.model_copy(update={"families": {"catboost": 2}})
    features = churn.features.model_copy(update={"search": False})
    use_case = churn.model_copy(update={"tuning": tuning, "features": features})
    return build_package(use_case, tmp_path_factory.mktemp("catboost"), trials=0)


def test_a_catboost_package_serves_the_in_process_predictions_and_additive_explanations(catboost_package: Path):
    manifest = verify(catboost_package)
    training = json.loads((catboost_package / "model" / "training.json").read_text())
    assert [(c["family"], c["trials"]) for c in training["candidates"]] == [("catboost", 2)]
    assert training["catboost_version"] == "1.2.10"
    loaded = LoadedPackage.load(catboost_package)
    assert [m.family for m in loaded.model.members] == ["catboost"]
    assert any(name.startswith("model/catboost") and name.endswith(".cbm") for name in manifest["files"])
    assert_served_as_in_process(catboost_package, loaded)


def test_a_broken_catboost_model_file_is_refused_with_its_name(catboost_package: Path, tmp_path: Path):
    import shutil

    from flowline.models.ensemble import Ensemble, ModelError

    model = tmp_path / "model"
    shutil.copytree(catboost_package / "model", model)
    (cbm,) = model.glob("*.cbm")
    cbm.write_bytes(b"CBM1" + b"\x00" * 64)
    with pytest.raises(ModelError, match=f"catboost model \\['{cbm.name}'\\] is unreadable"):
        Ensemble.load(model)
