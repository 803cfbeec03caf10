"""SHAP and LIME explanations on a synthetic case whose dominant column is known, and the HTML report."""

import numpy as np
import pandas as pd
import pytest
from html_checks import assert_renders_as_a_page
from scipy.stats import spearmanr

from flowline.components.explain.explanation import ColumnCodec, explain, rank_agreement
from flowline.components.explain.report import explanation_html
from flowline.features.feature_set import FeatureSet
from flowline.models.ensemble import Ensemble, Member
from flowline.models.families import refit_candidate
from flowline.use_case import TuningSpec
from flowline.use_case_loader import parse_use_case

XGBOOST = {"eta": 0.1, "max_depth": 3, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
           "lambda": 1.0, "alpha": 0.0}


def known_driver_use_case():
    return parse_use_case({
        "name": "driver", "task": "binary", "data": {"path": "unused.csv"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]},
        "columns": {"driver": {"type": "number"}, "weak": {"type": "number"}, "noise": {"type": "number"},
                    "plan": {"type": "category", "allowed": ["basic", "pro"]}},
        "costs": {"false_negative": 1, "false_positive": 1}, "features": {"search": False},
    })


def known_driver_rows(n: int, seed: int) -> pd.DataFrame:
    """The label follows `driver` closely; `weak` and `plan` nudge it; `noise` is noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"driver": rng.normal(0, 1, n), "weak": rng.normal(0, 1, n), "noise": rng.normal(0, 1, n),
                          "plan": rng.choice(["basic", "pro"], n)})
    signal = 3.0 * frame["driver"] + 0.4 * frame["weak"] + 0.3 * (frame["plan"] == "pro") + rng.normal(0, 0.3, n)
    return frame.assign(label=np.where(signal > 0, "yes", "no"))


@pytest.fixture(scope="module")
def fitted():
    use_case = known_driver_use_case()
    train = known_driver_rows(1500, 1)
    feature_set = FeatureSet.fit(train, use_case)
    x, y = feature_set.transform(train), feature_set.labels(train)
    model = refit_candidate("xgboost", XGBOOST, 150, x, y, "binary", TuningSpec())
    return use_case, feature_set, Ensemble("binary", [Member("xgboost", model, 1.0)]), train


def test_shap_and_lime_both_name_the_known_driver(fitted):
    use_case, feature_set, model, train = fitted
    explanation = explain(use_case, feature_set, model, train, known_driver_rows(400, 2), seed=0)
    assert next(iter(explanation["global_importance"])) == "driver"
    assert explanation["global_importance"]["driver"] > 3 * explanation["global_importance"]["noise"]
    assert explanation["additivity_max_error"] < 1e-4
    assert len(explanation["local"]) == 5
    for instance in explanation["local"]:
        assert next(iter(instance["shap"])) == "driver"
        assert next(iter(instance["lime"])) == "driver"
        assert instance["top_column_agrees"]
    assert explanation["agreement"]["top_column_agreement"] == 1.0
    assert list(explanation["dependence"]) == list(explanation["global_importance"])[:3]
    shap_driver = np.array(explanation["dependence"]["driver"]["shap"])
    values = np.array(explanation["dependence"]["driver"]["values"])
    assert spearmanr(values, shap_driver).statistic > 0.9  # a higher driver raises the score


def test_rank_agreement_is_one_for_the_same_order_and_low_for_the_reverse():
    shap_values = np.array([3.0, -2.0, 1.0, 0.5, 0.1, 0.0])
    same = rank_agreement(shap_values, shap_values * 0.1)
    assert same["spearman"] == pytest.approx(1.0) and same["top_column_agrees"]
    reverse = rank_agreement(shap_values, np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), top=3)
    assert reverse["spearman"] < 0 and not reverse["top_column_agrees"]


def test_the_codec_round_trips_raw_columns_for_lime():
    use_case = known_driver_use_case()
    frame = known_driver_rows(20, 3)
    frame.loc[0, "weak"] = np.nan
    codec = ColumnCodec.fit(frame, ["driver", "weak", "plan"], use_case, {"driver": 0.0, "weak": 7.5})
    back = codec.decode(codec.encode(frame))
    assert back["plan"].tolist() == frame["plan"].tolist()
    assert np.allclose(back["driver"], frame["driver"])
    assert back.loc[0, "weak"] == 7.5  # LIME never sees NaN: the FeatureSet's fill, as the row is scored
    assert codec.categorical_positions == [2]


def imputing_use_case():
    """`driver` imputes 2.5 (far from its median, 0), and `plan` takes any text: training sees basic and pro."""
    return parse_use_case({
        "name": "driver", "task": "binary", "data": {"path": "unused.csv"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]},
        "columns": {"driver": {"type": "number", "nullable": True, "impute": 2.5}, "weak": {"type": "number"},
                    "noise": {"type": "number"}, "plan": {"type": "category", "nullable": True}},
        "costs": {"false_negative": 1, "false_positive": 1}, "features": {"search": False},
    })


def test_lime_explains_the_row_as_it_was_scored_with_a_blank_and_an_unseen_category():
    """A blank number was filled with the training median though the use case imputes otherwise, and an unseen
    category became the first category: LIME explained a different row from the one scored."""
    use_case = imputing_use_case()
    train = known_driver_rows(1500, 1)
    feature_set = FeatureSet.fit(train, use_case)
    model = Ensemble("binary", [Member("xgboost", refit_candidate(
        "xgboost", XGBOOST, 150, feature_set.transform(train), feature_set.labels(train), "binary", TuningSpec()), 1.0)])
    rows = known_driver_rows(5, 5)
    rows.loc[0, "driver"] = np.nan  # scored at 2.5: LIME's instance at the median (about 0) scored otherwise
    rows.loc[1, "plan"] = "enterprise"  # unseen: scored as unseen, not as "basic"
    rows.loc[2, "plan"] = None  # missing: scored as missing, not as the text "(missing)"
    rows.loc[3, ["driver", "plan"]] = [np.nan, "enterprise"]
    served = model.predict(feature_set.transform(rows))
    explanation = explain(use_case, feature_set, model, train, rows, seed=0)
    assert len(explanation["local"]) == 5
    for instance in explanation["local"]:
        assert instance["lime_instance_score"] == pytest.approx(instance["score"], abs=1e-7)
        assert instance["score"] == pytest.approx(served[instance["row"]], abs=1e-7)
    assert served[0] > 0.9  # the fill matters: the median would have scored it near 0.5


def test_lime_keeps_an_integer_columns_fill_as_it_is_when_it_decodes_the_scored_row():
    """An integer column imputing its mean fills a blank with a fraction (-0.12 here); LIME's decoding rounded it
    to 0, and explained a row scored 0.13 around one scored 0.92."""
    use_case = imputing_use_case()
    use_case = use_case.model_copy(update={"columns": {**use_case.columns, "driver": use_case.columns["driver"].model_copy(
        update={"type": "integer", "impute": "mean"})}})
    train = known_driver_rows(1500, 1)
    train["driver"] = np.round(train["driver"] * 3)
    feature_set = FeatureSet.fit(train, use_case)
    assert next(i.fill for i in feature_set.numeric if i.column == "driver") % 1 != 0
    model = Ensemble("binary", [Member("xgboost", refit_candidate(
        "xgboost", XGBOOST, 150, feature_set.transform(train), feature_set.labels(train), "binary", TuningSpec()), 1.0)])
    rows = known_driver_rows(5, 5)
    rows["driver"] = None
    explanation = explain(use_case, feature_set, model, train, rows, seed=0)
    for instance in explanation["local"]:
        assert instance["lime_instance_score"] == pytest.approx(instance["score"], abs=1e-7)


def test_the_report_embeds_every_plot_and_renders_as_a_page(fitted, chromium, tmp_path):
    use_case, feature_set, model, train = fitted
    explanation = explain(use_case, feature_set, model, train, known_driver_rows(200, 4), seed=0)
    page = explanation_html(explanation, use_case)
    # importance, three dependence plots, one local chart per instance
    assert page.count('<img src="data:image/png;base64,') == 1 + 3 + len(explanation["local"])
    assert "mean Spearman rank correlation" in page
    written = tmp_path / "explanation.html"
    written.write_text(page)
    assert_renders_as_a_page(chromium, written, tmp_path)


def test_the_models_tree_attributions_are_the_shap_librarys(fitted, tmp_path):
    """shap's TreeExplainer, on the xgboost member as saved in a package, gives the same values."""
    import shap

    use_case, feature_set, model, train = fitted
    model.save(tmp_path / "model")
    member = Ensemble.load(tmp_path / "model").members[0].model
    x = feature_set.transform(known_driver_rows(50, 5))
    explainer = shap.TreeExplainer(member.booster)
    ours = member.contributions(x)
    assert np.allclose(ours[:, :-1], explainer.shap_values(x), atol=1e-4)
    assert np.allclose(ours[:, -1], explainer.expected_value, atol=1e-4)
    assert np.allclose(ours.sum(axis=1), member.margin(x), atol=1e-4)  # additivity on the loaded model
