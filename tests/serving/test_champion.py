"""A new package version is judged against the one before it on the same test rows, less those the champion was
fitted on: after the data changed, a seeded split puts most of the champion's training rows into the new test
split, where it looks better than it is (the numbers audit found a challenger "significantly worse" by 9.6
standard errors, and level on the rows the champion never saw)."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from flowline.components.evaluate.evaluation import MIN_COMPARED_ROWS, champion_scores, evaluate_files
from flowline.package.format import Package, verify
from flowline.use_case import UseCase

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


def test_a_new_version_is_compared_with_its_champion(churn_package, churn_package_b, churn_test_rows):
    evaluation = json.loads((churn_package_b / "evaluation.json").read_text())
    decision = evaluation["champion_challenger"]
    # Same data, same split: the champion was fitted on none of the test rows, so all of them are compared.
    assert decision["champion"] == {"package": str(churn_package), "version": verify(churn_package)["version"],
                                    "fitted_on_test_rows": 0, "compared_rows": evaluation["test_rows"]}
    champion = json.loads((churn_package / "evaluation.json").read_text())
    assert decision["test"] == "delong" and decision["alpha"] == 0.05
    assert decision["challenger_score"] == pytest.approx(evaluation["metrics"]["roc_auc"])
    assert decision["champion_score"] == pytest.approx(champion["metrics"]["roc_auc"])
    assert decision["difference"] == pytest.approx(decision["challenger_score"] - decision["champion_score"])
    assert decision["decision"] == ("promote" if decision["p_value"] < 0.05 else "keep")
    assert champion["champion_challenger"]["decision"] == "promote"  # the first had no champion
    assert Package.open(churn_package).version != Package.open(churn_package_b).version


def test_the_champion_is_compared_only_on_test_rows_it_was_not_fitted_on(churn_package, tmp_path):
    folder = churn_package.parent  # the champion's own split, model and holdout (serving_helpers.build_package)
    use_case = UseCase.model_validate_json((churn_package / "use_case.json").read_text())
    own_test, train = pd.read_parquet(folder / "test"), pd.read_parquet(folder / "train")
    # A new test split after the data changed: the rows the champion never saw, and 600 it was fitted on.
    test = pd.concat([own_test, train.sample(600, random_state=0)], ignore_index=True).sample(frac=1, random_state=1)
    test.to_parquet(tmp_path / "test")
    champion = Package.open(churn_package)
    y = (test["Churn"] == "Yes").to_numpy(dtype=float)

    scores, compared, described = champion_scores(str(churn_package), test, y, "binary")
    assert compared.sum() == len(own_test) and set(test[~compared]["customerID"]) <= set(train["customerID"])
    assert described["fitted_on_test_rows"] == 600 and described["compared_rows"] == len(own_test)
    assert np.array_equal(scores, champion.predict(test[compared]))

    # The same model as challenger (it is the champion's own build): level on the rows compared, and kept.
    report = evaluate_files(use_case, str(folder / "model"), str(folder / "fs.json"), str(folder / "holdout"),
                            str(tmp_path / "test"), str(tmp_path / "eval.json"), str(churn_package))
    decided = report["champion_challenger"]
    assert decided["champion_score"] == pytest.approx(roc_auc_score(y[compared], scores))
    assert decided["difference"] == 0 and decided["decision"] == "keep"
    assert f"on the {len(own_test):,} of {len(test):,} test rows it was not fitted on" in decided["reason"]
    assert json.loads((tmp_path / "eval.json").read_text())["champion_challenger"]["champion"]["compared_rows"] == \
        len(own_test)
    # Its full-test ROC-AUC, with the rows it learnt, is what the comparison used to read.
    assert roc_auc_score(y, champion.predict(test)) > decided["champion_score"]


def test_a_small_test_split_the_champion_never_saw_is_compared_whole(churn_package):
    """The floor of MIN_COMPARED_ROWS applies once the champion's own rows are out: a test split of 50 rows it
    never saw is compared as it always was, not promoted unjudged (the review of this stop)."""
    test = pd.read_parquet(churn_package.parent / "test").head(50)
    y = (test["Churn"] == "Yes").to_numpy(dtype=float)
    scores, compared, described = champion_scores(str(churn_package), test, y, "binary")
    assert scores is not None and compared.all() and described["fitted_on_test_rows"] == 0


def test_too_few_unseen_rows_are_no_comparison_and_say_so(churn_package):
    folder = churn_package.parent
    seen = pd.concat([pd.read_parquet(folder / "train").head(400),
                      pd.read_parquet(folder / "test").head(MIN_COMPARED_ROWS - 1)])
    y = (seen["Churn"] == "Yes").to_numpy(dtype=float)
    scores, compared, described = champion_scores(str(churn_package), seen, y, "binary")
    assert scores is None and compared.sum() == MIN_COMPARED_ROWS - 1
    assert described["note"] == (f"it was fitted on 400 of the {len(seen)} test rows; the {MIN_COMPARED_ROWS - 1} it "
                                 f"never saw are too few to compare on (at least {MIN_COMPARED_ROWS}, of both classes)")
