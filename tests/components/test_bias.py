import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference

from flowline.components.bias.fairness import decide_with_fairness, fit_group_thresholds, group_fairness, judge
from flowline.components.bias.thresholds import GroupThresholds, band_label, row_draws, sensitive_groups
from flowline.components.bias.report import fairness_html, fairness_markdown
from flowline.pipelines.use_case import UseCaseError, parse_use_case


def biased_use_case(gates: dict, mitigation: bool, constraint: str = "demographic_parity", **extra):
    return parse_use_case({
        "name": "lending", "task": "binary", "data": {"path": "unused.csv"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]},
        "columns": {"group": {"type": "category"}, "age": {"type": "integer", "min": 0}, "x": {"type": "number"}},
        "sensitive_attributes": ["group", *extra.pop("more_attributes", [])],
        "costs": {"false_negative": 1, "false_positive": 1},
        "fairness": {"gates": gates, "mitigation": {"enabled": mitigation, "constraint": constraint}, **extra},
    })


def test_group_metrics_and_gaps_match_a_case_worked_by_hand():
    # Group a: 4 rows, labels 1 1 0 0, decisions 1 0 1 0 -> selection 2/4, TPR 1/2, FPR 1/2, precision 1/2.
    # Group b: 6 rows, labels 1 1 1 0 0 0, decisions 1 1 1 1 0 0 -> selection 4/6, TPR 3/3, FPR 1/3, precision 3/4.
    y = np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 0])
    decisions = np.array([1, 0, 1, 0, 1, 1, 1, 1, 0, 0])
    groups = pd.Series(["a"] * 4 + ["b"] * 6)
    result = group_fairness(y, decisions, groups, min_rows=1)
    assert result["by_group"]["a"] == pytest.approx({"rows": 4, "selection_rate": 0.5, "true_positive_rate": 0.5,
                                                     "false_positive_rate": 0.5, "precision": 0.5})
    assert result["by_group"]["b"] == pytest.approx({"rows": 6, "selection_rate": 4 / 6, "true_positive_rate": 1.0,
                                                     "false_positive_rate": 1 / 3, "precision": 0.75})
    assert result["demographic_parity_difference"] == pytest.approx(4 / 6 - 0.5)
    assert result["equalized_odds_difference"] == pytest.approx(0.5)  # TPR gap 1/2 beats FPR gap 1/6
    assert result["disparate_impact_ratio"] == pytest.approx(0.5 / (4 / 6))  # 0.75: fails the four-fifths rule
    # ... and the same as fairlearn's own summary functions
    assert result["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, decisions, sensitive_features=groups))
    assert result["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, decisions, sensitive_features=groups))
    assert result["disparate_impact_ratio"] == pytest.approx(
        demographic_parity_ratio(y, decisions, sensitive_features=groups))


def test_groups_too_small_to_compare_are_reported_but_left_out_of_the_gaps():
    y = np.array([1, 0] * 20 + [1])
    decisions = np.array([1, 0] * 20 + [0])
    groups = pd.Series(["a"] * 20 + ["b"] * 20 + ["c"])
    result = group_fairness(y, decisions, groups, min_rows=10)
    assert set(result["by_group"]) == {"a", "b", "c"} and result["compared_groups"] == ["a", "b"]
    assert result["disparate_impact_ratio"] == 1.0  # c flags nobody, but one row proves nothing
    alone = group_fairness(y, decisions, groups, min_rows=30)
    assert alone["disparate_impact_ratio"] == 1.0 and "fewer than two groups" in alone["note"]


def test_numeric_attributes_are_judged_in_the_use_cases_bands_and_values_group_alike_however_read():
    assert [band_label(v, [1, 26, 41, 65]) for v in (0, 1, 25.5, 26, 64, 65, 90)] == [
        "<1", "[1, 26)", "[1, 26)", "[26, 41)", "[41, 65)", ">=65", ">=65"]
    use_case = biased_use_case({}, False, more_attributes=["age"], bands={"age": [1, 26, 41, 65]})
    frame = pd.DataFrame({"group": ["a", None, "b"], "age": [0, 30, np.nan]})
    assert sensitive_groups(frame, "age", use_case).tolist() == ["<1", "[26, 41)", "missing"]
    assert sensitive_groups(frame, "group", use_case).tolist() == ["a", "missing", "b"]
    unbanded = biased_use_case({}, False, more_attributes=["age"])
    assert sensitive_groups(pd.DataFrame({"age": [1, 1.0, np.int64(1)]}), "age", unbanded).tolist() == ["1"] * 3


def test_the_use_case_refuses_unknown_fairness_metrics_bands_of_other_columns_and_regression():
    with pytest.raises(UseCaseError, match="unknown fairness metric 'parity'"):
        biased_use_case({"parity": {"max": 0.1}}, False)
    with pytest.raises(UseCaseError, match="fairness.bands: 'x' is not one of sensitive_attributes"):
        biased_use_case({}, False, bands={"x": [1.0]})
    with pytest.raises(UseCaseError, match="strictly increasing"):
        biased_use_case({}, False, more_attributes=["age"], bands={"age": [30, 20]})


def synthetic_bias(rows: int = 4000, seed: int = 0):
    """Equal base rates in both groups, but group b's scores are pushed up: b is flagged far more often."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], rows)
    y = rng.integers(0, 2, rows)
    scores = 1 / (1 + np.exp(-(2.0 * y - 1 + rng.normal(0, 1, rows) + np.where(group == "b", 1.0, -0.5))))
    frame = pd.DataFrame({"group": group, "age": rng.integers(18, 80, rows), "x": scores})
    return frame, y, scores


def test_a_biased_model_fails_the_gate_and_mitigation_narrows_the_gap_with_its_cost_reported():
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True)
    train, y_train, s_train = synthetic_bias(seed=1)
    test, y_test, s_test = synthetic_bias(seed=2)
    holdout = pd.DataFrame({"label": y_train, "prediction": s_train, "group": train["group"]})
    x_test = test[["x"]].to_numpy()  # stands in for the encoded features the row draws hash

    unmitigated = judge(biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=False),
                        y_test, s_test, 0.5, test, x_test, holdout)
    assert unmitigated["attributes"]["group"]["gate"] == "fail" and not unmitigated["passed"]
    assert unmitigated["mitigation"] is None
    before = unmitigated["attributes"]["group"]["demographic_parity_difference"]

    mitigated = judge(use_case, y_test, s_test, 0.5, test, x_test, holdout)
    after = mitigated["attributes"]["group"]
    assert mitigated["before_mitigation"]["group"]["demographic_parity_difference"] == before
    assert after["demographic_parity_difference"] < before / 3
    assert after["gate"] == "pass" and mitigated["passed"]
    assert mitigated["mitigation"]["attributes"] == ["group"]
    assert set(mitigated["mitigation"]["groups"]) == {"group=a", "group=b"}
    outcomes = mitigated["outcomes"]
    assert set(outcomes) == {"single_threshold", "mitigated"}
    assert outcomes["single_threshold"]["accuracy"] != outcomes["mitigated"]["accuracy"]


def test_mitigated_decisions_are_fixed_per_row_and_survive_a_json_round_trip():
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True)
    frame, y, scores = synthetic_bias(seed=3)
    keys = "group=" + frame["group"]
    rule = fit_group_thresholds(y, scores, keys, ("group",), use_case.fairness.mitigation, 0.5)
    x = frame[["x"]].to_numpy()
    decided = rule.decide(scores, frame, x, use_case)
    again = GroupThresholds.from_dict(json.loads(json.dumps(rule.to_dict()))).decide(scores, frame, x, use_case)
    assert np.array_equal(decided, again)
    one_by_one = [rule.decide(scores[i:i + 1], frame.iloc[[i]], x[i:i + 1], use_case)[0] for i in range(50)]
    assert one_by_one == decided[:50].tolist()  # a single request gets what the batch got
    unseen = frame.iloc[:3].assign(group="z")
    assert rule.decide(scores[:3], unseen, x[:3], use_case).tolist() == (scores[:3] >= 0.5).tolist()
    draws = row_draws(x)
    assert draws.min() >= 0 and draws.max() < 1 and abs(draws.mean() - 0.5) < 0.05


def test_a_failed_fairness_gate_fails_the_run_and_keeps_the_champion():
    evaluation = {"gates_passed": True, "champion_challenger": {"decision": "promote", "reason": "no champion"}}
    fairness = {"attributes": {"group": {"gates": {"disparate_impact_ratio": {"value": 0.61, "min": 0.8, "max": None,
                                                                              "passed": False}}, "gate": "fail"}},
                "passed": False}
    decided = decide_with_fairness(evaluation, fairness)
    assert decided["gates_passed"] is False and decided["champion_challenger"]["decision"] == "keep"
    assert decided["champion_challenger"]["reason"] == \
        "the challenger failed its fairness gates: group disparate_impact_ratio 0.610"
    assert decide_with_fairness(evaluation, {**fairness, "passed": True})["champion_challenger"]["decision"] == "promote"


def test_the_reports_show_each_attribute_its_gates_and_the_tradeoff():
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True)
    train, y_train, s_train = synthetic_bias(seed=1)
    test, y_test, s_test = synthetic_bias(seed=2)
    holdout = pd.DataFrame({"label": y_train, "prediction": s_train, "group": train["group"]})
    fairness = judge(use_case, y_test, s_test, 0.5, test, test[["x"]].to_numpy(), holdout)
    markdown = fairness_markdown(fairness, use_case)
    ratio = fairness["attributes"]["group"]["disparate_impact_ratio"]
    assert f"| disparate_impact_ratio | {fairness['before_mitigation']['group']['disparate_impact_ratio']:.4f} | " \
           f"{ratio:.4f} | >= 0.8 |" in markdown
    assert "#### Fairness against accuracy" in markdown
    page = fairness_html(fairness, use_case)
    assert page.count("<img src=\"data:image/png;base64,") == 1 and "Fairness against accuracy" in page
