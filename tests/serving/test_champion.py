"""A new package version is judged against the one before it on the same test rows."""

import json

import pytest

from flowline.package.format import Package, verify

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


def test_a_new_version_is_compared_with_its_champion(churn_package, churn_package_b, churn_test_rows):
    evaluation = json.loads((churn_package_b / "evaluation.json").read_text())
    decision = evaluation["champion_challenger"]
    assert decision["champion"] == {"package": str(churn_package), "version": verify(churn_package)["version"]}
    champion = json.loads((churn_package / "evaluation.json").read_text())
    assert decision["test"] == "delong" and decision["alpha"] == 0.05
    assert decision["challenger_score"] == pytest.approx(evaluation["metrics"]["roc_auc"])
    assert decision["champion_score"] == pytest.approx(champion["metrics"]["roc_auc"])
    assert decision["difference"] == pytest.approx(decision["challenger_score"] - decision["champion_score"])
    assert decision["decision"] == ("promote" if decision["p_value"] < 0.05 else "keep")
    assert champion["champion_challenger"]["decision"] == "promote"  # the first had no champion
    assert Package.open(churn_package).version != Package.open(churn_package_b).version
