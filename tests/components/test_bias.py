import json

import numpy as np
import pandas as pd
import pytest
from html_checks import assert_renders_as_a_page
from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference

from flowline import reports
from flowline.components.bias.fairness import (decide_with_fairness, fairness_lines, group_fairness, judge,
                                               outcome_metrics)
from flowline.components.bias.mitigation import cost_optimal_thresholds, fit_group_thresholds
from flowline.decisions import GroupThresholds, band_label, row_draws, sensitive_groups
from flowline.components.bias.report import _group_rows, fairness_html, fairness_markdown
from flowline.decisions import gate_decisions, outcome_cost
from flowline.use_case import CostSpec, GateSpec, UseCaseError
from flowline.use_case_loader import parse_use_case


def biased_use_case(gates: dict, mitigation: bool, constraint: str = "demographic_parity", **extra):
    options = extra.pop("mitigation_options", {})
    return parse_use_case({
        "name": "lending", "task": "binary", "data": {"path": "unused.csv"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]},
        "columns": {"group": {"type": "category"}, "age": {"type": "integer", "min": 0}, "x": {"type": "number"}},
        "sensitive_attributes": ["group", *extra.pop("more_attributes", [])],
        "costs": {"false_negative": 1, "false_positive": 1},
        "fairness": {"gates": gates, "mitigation": {"enabled": mitigation, "constraint": constraint, **options},
                     **extra},
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


def test_a_group_without_positives_has_no_true_positive_rate_and_the_gap_leaves_it_out():
    """fairlearn's true_positive_rate gives 0 for a group without positives, which made the equalized-odds
    difference group a's whole TPR (the numbers audit: 0.951 where the FPR gap was 0.006), a gate failed over a gap
    that does not exist, and per-group thresholds that could never pass it."""
    rng = np.random.default_rng(0)
    groups = pd.Series(["a"] * 400 + ["b"] * 100)
    y = np.concatenate([rng.binomial(1, 0.3, 400), np.zeros(100, dtype=int)])
    decisions = np.concatenate([y[:400] | (rng.random(400) < 0.2), rng.random(100) < 0.2]).astype(int)
    result = group_fairness(y, decisions, groups, min_rows=30)
    b = result["by_group"]["b"]
    assert b["true_positive_rate"] is None and b["false_positive_rate"] == pytest.approx(decisions[400:].mean())
    fpr_gap = abs(result["by_group"]["a"]["false_positive_rate"] - b["false_positive_rate"])
    assert result["equalized_odds_difference"] == pytest.approx(fpr_gap) and fpr_gap < 0.1
    assert result["note"] == "b has no positives: its rate there is undefined and left out of the gap"
    assert json.loads(json.dumps(result)) == result  # no NaN in evaluation.json
    assert _group_rows(result)[1][:4] == ["b", 100, b["selection_rate"], "undefined"]  # the reports' table row


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
    # Served records carry text as the client sent it: read as ingest reads a cell, so the group is the same.
    sent = pd.DataFrame({"age": ["1", "1.0", " 01 ", "+1", " ", 30], "group": [" a ", "a", "", None, "b", " b"]})
    assert sensitive_groups(sent, "age", unbanded).tolist() == ["1"] * 4 + ["missing", "30"]
    assert sensitive_groups(sent, "age", use_case).tolist() == ["[1, 26)"] * 4 + ["missing", "[26, 41)"]
    assert sensitive_groups(sent, "group", use_case).tolist() == ["a", "a", "missing", "missing", "b", "b"]


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


def unequal_base_rates(rows: int = 4000, seed: int = 0):
    """Well-ranked scores, but group b's members are positive far more often: parity has a price."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], rows)
    risk = rng.normal(0, 1, rows) + np.where(group == "b", 1.0, -1.0)
    y = (risk + rng.normal(0, 0.7, rows) > 0).astype(int)
    scores = 1 / (1 + np.exp(-1.5 * risk))
    return pd.DataFrame({"group": group, "age": rng.integers(18, 80, rows), "x": scores}), y, scores


def judged_on(holdout_seed: int, test_seed: int, draw=synthetic_bias, **mitigation) -> tuple[dict, object]:
    """The bias step on synthetic scores: out-of-fold rows from one draw, test rows from another."""
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True, **mitigation)
    train, y_train, s_train = draw(seed=holdout_seed)
    test, y_test, s_test = draw(seed=test_seed)
    holdout = pd.DataFrame({"label": y_train, "prediction": s_train, "group": train["group"]})
    x_test = test[["x"]].to_numpy()  # stands in for the encoded features a randomised rule's draws hash
    return judge(use_case, y_test, s_test, 0.5, test, x_test, holdout), use_case


def test_a_biased_model_fails_the_gate_and_affordable_per_group_thresholds_pass_it():
    fairness, _ = judged_on(1, 2, mitigation_options={"max_cost_increase": 0.5})
    single, mitigated = fairness["single_threshold"], fairness["mitigated"]
    before = single["out_of_fold"]["attributes"]["group"]
    assert before["gate"] == "fail" and fairness["failing"] == ["group"]
    after = mitigated["out_of_fold"]["attributes"]["group"]
    assert after["gate"] == "pass" and after["demographic_parity_difference"] <= 0.05 + 1e-9  # the tolerance
    assert fairness["applied"] and fairness["passed"] and fairness["mitigation"] == mitigated["rule"]
    assert fairness["attributes"] == mitigated["out_of_fold"]["attributes"]  # the served decisions are gated
    # One threshold per group, and the test rows report both options.
    assert set(fairness["mitigation"]["groups"]) == {"group=a", "group=b"} and not fairness["mitigation"]["randomized"]
    assert mitigated["test"]["attributes"]["group"]["disparate_impact_ratio"] > \
        single["test"]["attributes"]["group"]["disparate_impact_ratio"]
    cost_before = single["out_of_fold"]["outcomes"]["expected_cost_per_1000"]
    cost_after = mitigated["out_of_fold"]["outcomes"]["expected_cost_per_1000"]
    assert cost_after <= 1.5 * cost_before  # here even cheaper: the single threshold misjudged both groups
    assert fairness["reason"].startswith("applied: per-group thresholds pass every gate at an acceptable cost")
    assert f"{cost_before:,.0f} -> {cost_after:,.0f}" in fairness["reason"]


def test_a_mitigation_that_costs_too_much_is_not_applied_and_the_gate_fails_with_the_tradeoff_named():
    fairness, use_case = judged_on(1, 2, unequal_base_rates, mitigation_options={"max_cost_increase": 0.1})
    assert not fairness["applied"] and fairness["mitigation"] is None and not fairness["passed"]
    assert fairness["attributes"] == fairness["single_threshold"]["out_of_fold"]["attributes"]
    mitigated = fairness["mitigated"]["out_of_fold"]
    assert mitigated["attributes"]["group"]["gate"] == "pass"  # it would have passed...
    cost_before = fairness["single_threshold"]["out_of_fold"]["outcomes"]["expected_cost_per_1000"]
    cost_after = mitigated["outcomes"]["expected_cost_per_1000"]
    ratio_before = fairness["single_threshold"]["out_of_fold"]["attributes"]["group"]["disparate_impact_ratio"]
    ratio_after = mitigated["attributes"]["group"]["disparate_impact_ratio"]
    assert fairness["reason"] == (  # ... at this price
        f"not applied: per-group thresholds would pass every gate but cost too much: group disparate_impact_ratio "
        f"{ratio_before:.3f} -> {ratio_after:.3f} (>= 0.8); expected cost per 1,000 {cost_before:,.0f} -> "
        f"{cost_after:,.0f} ({cost_after / cost_before - 1:+.1%}, max_cost_increase 10%)")
    decided = decide_with_fairness({"gates_passed": True, "champion_challenger": {"decision": "promote"}}, fairness,
                                   use_case)
    assert decided["gates_passed"] is False and decided["champion_challenger"]["decision"] == "keep"
    shown = fairness_lines(fairness)  # what the run's terminal says
    assert shown[-2:] == [f"bias: mitigation {fairness['reason']}", "bias: fairness gate FAIL"]
    assert f"Mitigation {fairness['reason']}." in fairness_markdown(fairness, use_case)


def test_served_per_group_thresholds_are_held_to_the_quality_gates_a_threshold_decides():
    """Evaluate judges precision, recall and cost at the single threshold; served per-group thresholds decide
    otherwise (a claims run passed precision >= 0.14 and cost <= 121,000 at it, and served 0.128 and 123,217).
    The served decisions' test values are judged again; a threshold-free gate stays evaluate's."""
    fairness, use_case = judged_on(1, 2, mitigation_options={"max_cost_increase": 0.5})
    served = fairness["mitigated"]["test"]["outcomes"]
    single = fairness["single_threshold"]["test"]["outcomes"]
    assert fairness["applied"] and served["precision"] != single["precision"]
    bound = (served["precision"] + single["precision"]) / 2  # passed at the single threshold, failed as served
    gated = use_case.model_copy(update={"gates": {"precision": GateSpec(min=bound) if single["precision"] > bound
                                                  else GateSpec(max=bound), "roc_auc": GateSpec(min=0.5)}})
    evaluation = {"gates": gate_decisions({"precision": single["precision"], "roc_auc": 0.7}, gated.gates),
                  "gates_passed": True, "champion_challenger": {"decision": "promote", "reason": "no champion"}}
    assert evaluation["gates"]["precision"]["passed"]
    decided = decide_with_fairness(evaluation, fairness, gated)
    as_served = gate_decisions({"precision": served["precision"]}, {"precision": gated.gates["precision"]})
    assert decided["gates"]["precision"] == {**as_served["precision"], "decisions": "served per-group thresholds"}
    assert not decided["gates"]["precision"]["passed"]
    assert decided["gates"]["roc_auc"] == evaluation["gates"]["roc_auc"]
    assert decided["gates_passed"] is False and decided["champion_challenger"]["decision"] == "keep"
    assert decided["champion_challenger"]["reason"].startswith(
        "its served per-group thresholds failed quality gates on test: precision")
    # A package evaluate failed was kept without a champion comparison: passing as served does not make it pass.
    failed = {**evaluation, "gates_passed": False, "champion_challenger": {"decision": "keep", "reason": "gates"}}
    passing = use_case.model_copy(update={"gates": {"precision": GateSpec(min=0.0)}})
    assert decide_with_fairness(failed, fairness, passing)["gates_passed"] is False
    # The served decisions' confusion matrix, for the dashboard: it adds up to the test rows.
    matrix = np.array(fairness["mitigated"]["test"]["confusion_matrix"])
    assert matrix.sum() == 4000 and matrix[:, 1].sum() / matrix.sum() == pytest.approx(served["selection_rate"])


def test_the_gate_is_decided_out_of_fold_and_the_test_rows_only_report():
    """Fair out-of-fold scores pass the gate and nothing is fitted, however the test rows look."""
    fairness, _ = judged_on(1, 2)
    unbiased = pd.DataFrame({"label": [0, 1] * 200, "prediction": [0.2, 0.8] * 200, "group": ["a"] * 200 + ["b"] * 200})
    test, y_test, s_test = synthetic_bias(seed=2)
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True)
    fair = judge(use_case, y_test, s_test, 0.5, test, test[["x"]].to_numpy(), unbiased)
    assert fair["passed"] and fair["mitigated"] is None and fair["reason"].startswith("not needed")
    assert fair["single_threshold"]["test"]["attributes"]["group"]["gate"] == "fail"  # reported, not decisive


def test_per_group_thresholds_are_the_cheapest_within_the_tolerance_and_monotone_in_the_score():
    """Against a brute force over every pair of candidate thresholds, for TPR parity on two groups."""
    frame, y, scores = synthetic_bias(rows=1500, seed=4)
    keys = "group=" + frame["group"]
    costs = CostSpec(false_negative=5, false_positive=1)
    found = cost_optimal_thresholds(y, scores, keys, "true_positive_rate_parity", 0.05, costs, 0.5, min_rows=30)
    decisions = np.zeros(len(y), dtype=bool)
    for key, threshold in found.items():
        decisions[keys == key] = scores[keys == key] >= threshold
    tpr = {key: decisions[(keys == key) & (y == 1)].mean() for key in found}
    assert abs(tpr["group=a"] - tpr["group=b"]) <= 0.05
    best = np.inf
    a, b = (keys == "group=a").to_numpy(), (keys == "group=b").to_numpy()
    pairs = [(ta, tb) for ta in np.quantile(scores[a], np.linspace(0, 1, 60))
             for tb in np.quantile(scores[b], np.linspace(0, 1, 60))]
    for ta, tb in pairs:
        brute = np.where(a, scores >= ta, scores >= tb)
        if abs(brute[a & (y == 1)].mean() - brute[b & (y == 1)].mean()) <= 0.045:
            best = min(best, outcome_cost(y, brute, costs))
    assert outcome_cost(y, decisions, costs) <= best
    # Within a group, a higher score never gets a worse decision.
    for key in found:
        rows = (keys == key).to_numpy()
        order = np.argsort(scores[rows])
        assert np.all(np.diff(decisions[rows][order].astype(int)) >= 0)


def test_groups_too_small_to_fit_keep_the_single_threshold():
    frame, y, scores = synthetic_bias(rows=400, seed=5)
    keys = ("group=" + frame["group"]).where(frame.index >= 20, "group=tiny")  # 20 rows of a third group
    costs = CostSpec(false_negative=1, false_positive=1)
    found = cost_optimal_thresholds(y, scores, keys, "equalized_odds", 0.05, costs, 0.5, min_rows=30)
    assert set(found) == {"group=a", "group=b"}  # "tiny" is left to the single threshold
    assert cost_optimal_thresholds(y, scores, keys, "equalized_odds", 0.05, costs, 0.5, min_rows=400) is None


def test_a_randomized_rule_is_an_explicit_option_fixed_per_row_and_survives_a_json_round_trip():
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True,
                               mitigation_options={"randomized": True})
    frame, y, scores = synthetic_bias(seed=3)
    keys = "group=" + frame["group"]
    rule = fit_group_thresholds(y, scores, keys, ("group",), use_case, 0.5)
    assert rule.randomized and rule.to_dict()["randomized"] is True
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
    with pytest.raises(ValueError, match="no threshold per row"):
        rule.row_thresholds(frame, use_case)
    fairness, _ = judged_on(1, 2, mitigation_options={"randomized": True, "max_cost_increase": 1.0})
    assert fairness["mitigation"]["randomized"] and "randomised per-group rule" in fairness["reason"]
    assert "randomised" in fairness_markdown(fairness, use_case)


def test_deterministic_thresholds_decide_each_row_by_its_groups_threshold():
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True)
    rule = GroupThresholds(("group",), "demographic_parity", 0.5, {"group=a": {"threshold": 0.3},
                                                                   "group=b": {"threshold": 0.7}})
    frame = pd.DataFrame({"group": ["a", "a", "b", "b", "z"]})
    scores = np.array([0.29, 0.3, 0.69, 0.7, 0.5])
    assert rule.row_thresholds(frame, use_case).tolist() == [0.3, 0.3, 0.7, 0.7, 0.5]  # z: the single threshold
    assert rule.decide(scores, frame, np.zeros((5, 1)), use_case).tolist() == [False, True, False, True, True]
    assert GroupThresholds.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule


def test_a_score_equal_to_its_reported_threshold_is_positive_even_when_float64_says_below():
    """Answers report scores and thresholds in float32: a threshold a hair above a score in float64 (as a
    search over the scores can pick) rounds to the score, and the decision must agree with what is shown."""
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=True)
    above = float(np.nextafter(np.float64(np.float32(0.5)), 1.0))
    rule = GroupThresholds(("group",), "demographic_parity", 0.5, {"group=a": {"threshold": above}})
    frame, scores = pd.DataFrame({"group": ["a"]}), np.array([0.5], dtype=np.float32)
    assert np.float32(rule.row_thresholds(frame, use_case)[0]) == scores[0]
    assert rule.decide(scores, frame, np.zeros((1, 1)), use_case).tolist() == [True]


def test_a_failed_fairness_gate_fails_the_run_and_keeps_the_champion():
    evaluation = {"gates_passed": True, "champion_challenger": {"decision": "promote", "reason": "no champion"}}
    fairness = {"attributes": {"group": {"gates": {"disparate_impact_ratio": {"value": 0.61, "min": 0.8, "max": None,
                                                                              "passed": False}}, "gate": "fail"}},
                "passed": False}
    use_case = biased_use_case({"disparate_impact_ratio": {"min": 0.8}}, mitigation=False)
    decided = decide_with_fairness(evaluation, fairness, use_case)
    assert decided["gates_passed"] is False and decided["champion_challenger"]["decision"] == "keep"
    assert decided["champion_challenger"]["reason"] == \
        "the challenger failed its fairness gates: group disparate_impact_ratio 0.610"
    passed = decide_with_fairness(evaluation, {**fairness, "passed": True}, use_case)
    assert passed["champion_challenger"]["decision"] == "promote"
    # The dashboard's run outcome is the bias step's (evaluate's metrics know only the quality gates).
    assert outcome_metrics(decided) == {"gates_passed": 0.0, "promoted": 0.0}
    assert outcome_metrics(passed) == {"gates_passed": 1.0, "promoted": 1.0}


def test_the_reports_show_both_options_side_by_side_with_thresholds_and_why(chromium, tmp_path):
    fairness, use_case = judged_on(1, 2, mitigation_options={"max_cost_increase": 0.5})
    markdown = fairness_markdown(fairness, use_case)
    single, mitigated = fairness["single_threshold"], fairness["mitigated"]
    values = [option[sample]["attributes"]["group"]["disparate_impact_ratio"]
              for sample in ("out_of_fold", "test") for option in (single, mitigated)]
    assert "| group | disparate_impact_ratio | " + " | ".join(f"{v:,.4f}" for v in values) + " | >= 0.8 | pass |" \
        in markdown
    cost = [option[sample]["outcomes"]["expected_cost_per_1000"]
            for sample in ("out_of_fold", "test") for option in (single, mitigated)]
    assert "| expected_cost_per_1000 | " + " | ".join(f"{v:,.4f}" for v in cost) + " |" in markdown
    for key, rule in fairness["mitigation"]["groups"].items():
        assert f"| {key} | {rule['threshold']:,.4f} |" in markdown
    assert f"Mitigation {fairness['reason']}." in markdown
    page = fairness_html(fairness, use_case)
    assert page.count("<img src=\"data:image/png;base64,") == 1 and "Served thresholds" in page
    assert reports.escape(fairness["reason"]) in page
    written = tmp_path / "fairness.html"
    written.write_text(page)
    assert_renders_as_a_page(chromium, written, tmp_path)
    lines = "\n".join(fairness_lines(fairness))
    assert f"bias: group disparate_impact_ratio {values[0]:.3f} at the single threshold -> {values[1]:.3f} mitigated" \
        in lines and "bias: fairness gate pass" in lines
