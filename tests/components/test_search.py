"""The search step: a time budget spent across the families (flowline/budget.py), cost-aware, with real Optuna."""

import json
from pathlib import Path

import pytest
from manifest_helpers import katib_errors
from stand_in_api import OPTIMAL, experiment_server

from flowline.budget import FamilySpend, budget_markdown, budgeted_search, halve, rounds_for
from flowline.search import SearchResult
from flowline.search_space import search_space
from flowline.tuning import search_files
from flowline.use_case import FAMILIES, TuningSpec


def test_halving_takes_as_many_rounds_as_leave_one_family():
    assert [rounds_for(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 3, 3, 4]


def test_halving_stops_the_weaker_half_and_the_families_too_slow_for_their_next_share():
    def spend(family: str, best: float, trials: int, seconds: float) -> FamilySpend:
        return FamilySpend(family, cap=100, trials=trials, seconds=seconds, best=best)

    # Measured costs, injected: linear 0.01 s a trial, forest 3 s; the next round gives each survivor 2 s.
    spends = [spend("xgboost", 0.90, 10, 5.0), spend("linear", 0.88, 50, 0.5), spend("forest", 0.86, 2, 6.0),
              spend("mlp", 0.70, 3, 3.0)]
    halve(spends, next_share=2.0, round_number=1)
    assert [s.stopped.split(":")[0] for s in spends] == ["", "", "halving after round 1", "halving after round 1"]
    assert "ranked 4 of 4" in spends[3].stopped
    # A slow family ranked second stops as too slow; the best family runs on however slow (someone must).
    spends = [spend("forest", 0.91, 2, 6.0), spend("linear", 0.90, 50, 0.5), spend("xgboost", 0.89, 2, 8.0),
              spend("mlp", 0.70, 1, 1.0)]
    halve(spends, next_share=2.0, round_number=1)
    assert spends[0].stopped == "" and spends[1].stopped == ""
    halve(spends, next_share=2.0, round_number=2)
    assert spends[0].stopped == "" and spends[1].stopped.startswith("halving after round 2")
    slow = [spend("linear", 0.90, 50, 0.5), spend("xgboost", 0.89, 2, 8.0), spend("mlp", 0.5, 1, 1.0)]
    halve(slow, next_share=2.0, round_number=1)
    assert slow[1].stopped == "too slow: a trial takes 4.0 s, its share of round 2 is 2.0 s"
    # A family the budget ran out before is not ranked (its best, -inf, said it lost a halving it never ran).
    unrun = [spend("xgboost", 0.89, 1, 125.0), FamilySpend("linear", cap=100), FamilySpend("mlp", cap=100)]
    halve(unrun, next_share=0.0, round_number=1)
    assert [s.stopped for s in unrun] == ["", "", ""]


def test_no_trial_starts_once_the_budget_is_spent(data):
    tuning = TuningSpec(max_boost_rounds=100, early_stopping_rounds=20)
    results, record = budgeted_search({"xgboost": 10_000, "linear": 10_000}, data, tuning, 2.0,
                                      progress=lambda line: None)
    starts = [start for family in record["families"].values() for start in family["starts"]]
    assert starts and max(starts) < 2.0
    assert record["seconds"] >= 2.0  # the budget, not the caps, ended the search
    assert all(not f["stopped"].startswith("reached") for f in record["families"].values())
    assert {family: result.trials for family, result in results.items()} == {
        family: f["trials"] for family, f in record["families"].items()}


def test_a_cheap_family_gets_more_trials_than_a_slow_one_for_the_same_seconds(data):
    # xgboost trains every one of its 400 rounds (no early stop) on each trial; linear fits one small model.
    tuning = TuningSpec(max_boost_rounds=400, early_stopping_rounds=400)
    _, record = budgeted_search({"xgboost": 10_000, "linear": 10_000}, data, tuning, 3.0, progress=lambda line: None)
    xgboost, linear = record["families"]["xgboost"], record["families"]["linear"]
    assert xgboost["trial_seconds"] > linear["trial_seconds"]
    assert linear["per_round"][0] > xgboost["per_round"][0]  # the first round shares seconds equally


def test_a_family_stops_at_its_trials_cap(data):
    results, record = budgeted_search({"linear": 4}, data, TuningSpec(), 60.0, progress=lambda line: None)
    assert results["linear"].trials == 4 and record["families"]["linear"]["stopped"] == "reached its trials cap"
    assert record["seconds"] < 60.0


def test_the_time_budget_starts_each_family_from_its_portfolio(data):
    # Caps no larger than the portfolios: every trial a family runs is one of its portfolio's first points.
    tuning = TuningSpec(max_boost_rounds=100, early_stopping_rounds=20)
    results, record = budgeted_search({"xgboost": 1, "linear": 2}, data, tuning, 60.0, progress=lambda line: None)
    assert results["xgboost"].params == search_space("xgboost", "binary", tuning).portfolio[0]
    assert results["linear"].params in search_space("linear", "binary", tuning).portfolio[:2]
    assert [record["families"][f]["stopped"] for f in ("xgboost", "linear")] == ["reached its trials cap"] * 2


def test_the_budget_shows_as_markdown_per_family():
    record = {"time_budget": 30.0, "seconds": 30.4, "rounds": 2, "families": {
        "xgboost": {"trials": 12, "seconds": 20.0, "trial_seconds": 1.667, "best": 0.85, "stopped": "budget spent"},
        "linear": {"trials": 40, "seconds": 8.0, "trial_seconds": 0.2, "best": None,
                   "stopped": "the budget was spent before its first trial"}}}
    shown = budget_markdown(record, lambda score: score, "valid_roc_auc")
    assert "| xgboost | 12 | 20.0 | 1.67 | 0.8500 | budget spent |" in shown
    assert "| linear | 40 | 8.0 | 0.20 |  | the budget was spent before its first trial |" in shown
    assert shown.startswith("# How the 30 s search budget was spent")


def test_the_search_step_spends_the_budget_and_saves_each_best_for_train(toy_use_case, splits, tmp_path, capsys):
    use_case = toy_use_case.model_copy(update={"tuning": TuningSpec(families={"linear": 5, "forest": 3},
                                                                    time_budget=30.0)})
    files = {family: str(tmp_path / f"{family}.json") for family in FAMILIES}
    record = search_files(use_case, 0, "optuna", splits["train"], splits["valid"], splits["fs.json"], files)
    assert SearchResult.load(files["linear"]).trials == record["families"]["linear"]["trials"] == 5
    assert SearchResult.load(files["forest"]).trials == 3
    assert json.loads(Path(files["mlp"]).read_text())["skipped"] == "not in tuning.families"
    assert "tune (linear): best valid_roc_auc" in capsys.readouterr().out


def test_a_trials_budget_stays_reproducible_in_the_search_step(toy_use_case, splits, tmp_path):
    use_case = toy_use_case.model_copy(update={"tuning": TuningSpec(families={"linear": 5, "xgboost": 5},
                                                                    time_budget=0.001, max_boost_rounds=50)})
    saved = []
    for run in ("first", "again"):
        files = {family: str(tmp_path / f"{run}-{family}.json") for family in FAMILIES}
        assert search_files(use_case, 4, "optuna", splits["train"], splits["valid"], splits["fs.json"], files) is None
        saved.append({family: SearchResult.load(files[family]) for family in ("linear", "xgboost")})
    assert saved[0] == saved[1] and all(result.trials == 4 for result in saved[0].values())


def test_a_family_the_budget_gave_no_trial_is_left_out_of_the_model(toy_use_case, splits, tmp_path,
                                                                                       capsys):
    use_case = toy_use_case.model_copy(update={"tuning": TuningSpec(families={"xgboost": 50, "linear": 5},
                                                                    time_budget=0.01)})
    files = {family: str(tmp_path / f"{family}.json") for family in FAMILIES}
    search_files(use_case, 0, "optuna", splits["train"], splits["valid"], splits["fs.json"], files)
    # xgboost's first trial spends the budget: linear gets none, and train goes on with xgboost
    assert SearchResult.load(files["xgboost"]).trials >= 1
    assert SearchResult.skipped(files["linear"]) == "no trial within tuning.time_budget 0.01 s"
    assert "tune (linear): no trial within the time budget (0.01 s); left out of the model" in capsys.readouterr().out


def test_with_katib_the_time_budget_sizes_each_familys_experiment(toy_use_case, splits, tmp_path, monkeypatch):
    api = experiment_server(OPTIMAL)
    # KatibClient() reads the default kubeconfig, whose path kubernetes fixes when imported.
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", api.kubeconfig(tmp_path))
    tuning = TuningSpec(families={"linear": 20}, time_budget=300, trial_seconds=100, parallel_trials=2)
    files = {family: str(tmp_path / f"{family}.json") for family in FAMILIES}
    assert search_files(toy_use_case.model_copy(update={"tuning": tuning}), 0, "katib", splits["train"],
                        splits["valid"], splits["fs.json"], files, source="https://data.example/toy.csv") is None
    experiment = api.requests[0]["body"]
    assert katib_errors(experiment) == []
    # floor(300 s / 100 s per trial) = 3 waves of 2 trials at once
    assert (experiment["spec"]["maxTrialCount"], experiment["spec"]["parallelTrialCount"]) == (6, 2)
    assert SearchResult.load(files["linear"]).backend == "katib"
