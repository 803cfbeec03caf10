"""Cost that grows gently with the data: feature selection, search and cross-fitting on a seeded, stratified
sample of at most `tuning.search_rows` rows; final models on all rows; one MLP fit capped in steps."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowline.budget import budget_markdown
from flowline.components.train.training import train_files
from flowline.features.engineering import engineer_features
from flowline.features.feature_set import FeatureSet
from flowline.models.ensemble import Ensemble
from flowline.models.families import TrainingData, fit_candidate
from flowline.models.mlp import BATCH_SIZE, train_mlp
from flowline.search import SearchResult
from flowline.splitting import search_sample
from flowline.tuning import search_files, tune_files
from flowline.use_case import FAMILIES, TuningSpec, UseCase


def with_tuning(use_case: UseCase, **settings) -> UseCase:
    return use_case.model_copy(update={"tuning": use_case.tuning.model_copy(update=settings)})


def with_features(use_case: UseCase, **settings) -> UseCase:
    return use_case.model_copy(update={"features": use_case.features.model_copy(update=settings)})


def labelled(n: int, positives: int, prefix: str) -> pd.DataFrame:
    """`n` rows of which `positives` are "yes", shuffled, with a shifted index (the split keeps the file's)."""
    label = np.where(np.random.default_rng(n).permutation(n) < positives, "yes", "no")
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(n)], "label": label}, index=np.arange(n) + 10_000)


def test_the_search_sample_is_capped_stratified_seeded_and_in_order(toy_use_case):
    train, valid = labelled(2000, 400, "t"), labelled(500, 100, "v")
    use_case = with_tuning(toy_use_case, search_rows=300, seed=0)
    sampled_train, sampled_valid = search_sample(train, valid, use_case)
    assert (len(sampled_train), len(sampled_valid)) == (300, 75)  # valid keeps the same share: 500 * 300 / 2000
    # Stratified: exactly the label's share (20 %) of each part.
    assert (sampled_train["label"] == "yes").sum() == 60 and (sampled_valid["label"] == "yes").sum() == 15
    assert sampled_train.index.is_monotonic_increasing and set(sampled_train.index) <= set(train.index)
    again, _ = search_sample(train, valid, use_case)
    assert list(again.index) == list(sampled_train.index)  # the same seed draws the same rows
    other, _ = search_sample(train, valid, with_tuning(use_case, seed=1))
    assert list(other.index) != list(sampled_train.index)
    # At or under the cap, or with no cap, every row is searched.
    for settings in ({"search_rows": 2000}, {"search_rows": None}):
        whole_train, whole_valid = search_sample(train, valid, with_tuning(use_case, **settings))
        assert whole_train is train and whole_valid is valid


def test_the_tune_step_searches_at_most_the_cap_and_records_it(toy_use_case, splits, tmp_path, capsys):
    use_case = with_tuning(toy_use_case, families={"linear": 2}, search_rows=150, cv_max_rows=0)  # of 300 train rows
    result = tune_files(use_case, "linear", 0, "optuna", splits["train"], splits["valid"], splits["fs.json"],
                        str(tmp_path / "linear.json"))
    assert result.rows == 150 and SearchResult.load(tmp_path / "linear.json").rows == 150
    assert "after 2 trials (0 stopped early) on 150 train rows" in capsys.readouterr().out
    uncapped = tune_files(with_tuning(use_case, search_rows=None, cv_max_rows=2000), "linear", 0, "optuna",
                          splits["train"], splits["valid"], splits["fs.json"], str(tmp_path / "all.json"))
    assert uncapped.rows == 300
    assert "each 5-fold cross-validated on 400 train + valid rows" in capsys.readouterr().out  # 300 + 100: few rows


def test_the_search_step_spends_its_budget_on_the_sample(toy_use_case, splits, tmp_path):
    use_case = with_tuning(toy_use_case, families={"linear": 2}, time_budget=30.0, search_rows=120)
    files = {family: str(tmp_path / f"{family}.json") for family in FAMILIES}
    record = search_files(use_case, 0, "optuna", splits["train"], splits["valid"], splits["fs.json"], files)
    assert record["rows"] == {"train": 120, "valid": 40}  # valid: 100 * 120 / 300
    assert SearchResult.load(files["linear"]).rows == 120


def test_feature_selection_searches_the_sample_and_fits_on_all_of_train(toy_use_case, splits):
    use_case = with_tuning(toy_use_case, search_rows=100)
    train, valid = pd.read_parquet(splits["train"]), pd.read_parquet(splits["valid"])
    feature_set, log = engineer_features(train, valid, use_case, progress=lambda line: None)
    assert log.rows == (100, 33)
    assert "on 100 train and 33 valid rows" in log.markdown()
    # Fitted on all 300 train rows: the same state as a fit of the chosen plan on them, not on the sample.
    assert feature_set.version == FeatureSet.fit(train, use_case, feature_set.plan).version
    sample, _ = search_sample(train, valid, use_case)
    assert feature_set.version != FeatureSet.fit(sample, use_case, feature_set.plan).version


def make_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    plan = rng.choice(["basic", "pro"], n)
    signal = 0.08 * (age - 50) + 1.5 * (plan == "pro") + rng.normal(0, 1, n)
    return pd.DataFrame({"id": [f"r{seed}-{i}" for i in range(n)], "age": age, "income": rng.normal(3000, 500, n),
                         "plan": plan, "label": np.where(signal > 0.5, "yes", "no")})


def test_train_cross_fits_on_the_sample_and_refits_on_all_rows(toy_use_case, tmp_path: Path):
    files = {name: str(tmp_path / f"{name}.parquet") for name in ("train", "valid")}
    make_rows(600, 1).to_parquet(files["train"])
    make_rows(200, 2).to_parquet(files["valid"])
    feature_set = FeatureSet.fit(pd.read_parquet(files["train"]), toy_use_case)
    feature_set.save(tmp_path / "fs.json")
    # Each of 5 folds fits on search_rows = 240 rows: 300 of the 800 rows of train + valid are cross-fitted.
    use_case = with_tuning(toy_use_case, families={"linear": 1}, search_rows=240)
    SearchResult("linear", {"C": 1.0, "l1_ratio": 0.0, "class_weight": "none"}, 0.0, 1, 1, 0, "optuna",
                 "valid_roc_auc").save(tmp_path / "linear.json")
    summary = train_files(use_case, files["train"], files["valid"], str(tmp_path / "fs.json"),
                          {"linear": str(tmp_path / "linear.json")}, str(tmp_path / "model"),
                          str(tmp_path / "holdout.parquet"))
    assert (summary["selection"]["rows"], summary["selection"]["cross_fitted_rows"]) == (800, 300)
    rows = pd.concat([pd.read_parquet(files["train"]), pd.read_parquet(files["valid"])])
    holdout = pd.read_parquet(tmp_path / "holdout.parquet")
    assert len(holdout) == 300 and set(holdout["id"]) < set(rows["id"])
    rate = (rows["label"] == "yes").mean()
    assert abs(holdout["label"].mean() - rate) < 0.01  # stratified by the label
    # The served model is refit on all 800 rows: its standardisation is their mean.
    (member,) = Ensemble.load(tmp_path / "model").members
    linear = getattr(member.model, "model", member.model)
    columns = list(getattr(member.model, "columns", range(feature_set.width)))
    x = feature_set.transform_training(rows)[:, columns]
    np.testing.assert_allclose(linear.mean, x.mean(axis=0), rtol=1e-5)  # float32 features
    assert not np.allclose(linear.mean, x[rows["id"].isin(holdout["id"]).to_numpy()].mean(axis=0))


def test_one_mlp_fit_takes_at_most_the_step_cap():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3))
    y = (x[:, 0] + rng.normal(0, 0.5, 1000) > 0).astype(float)
    batches = -(-1000 // BATCH_SIZE)  # 8 an epoch
    _, epochs, _ = train_mlp(x, y, (8,), "relu", 0.0, 0.01, True, 50, 0, max_steps=3 * batches + 1)
    assert epochs == 3
    _, epochs, _ = train_mlp(x, y, (8,), "relu", 0.0, 0.01, True, 50, 0, max_steps=1)
    assert epochs == 1  # at least one epoch
    _, epochs, _ = train_mlp(x, y, (8,), "relu", 0.0, 0.01, True, 50, 0)
    assert epochs == 50  # no cap: the epochs asked for
    # Through the model family: tuning.mlp_max_steps cuts a search trial's epochs (each one reported).
    data = TrainingData("binary", x[:800], y[:800], x[800:], y[800:])  # 7 batches an epoch
    reported = []
    params = {"depth": 1, "width_1": 8, "width_2": 8, "width_3": 8, "activation": "relu", "dropout": 0.0,
              "learning_rate": 0.01}
    fit_candidate("mlp", params, data, TuningSpec(max_epochs=200, mlp_max_steps=30),
                  lambda step, score: reported.append(step))
    assert reported == [1, 2, 3, 4]


@pytest.mark.parametrize("setting, value", [("search_rows", 99), ("mlp_max_steps", 0)])
def test_caps_below_their_minimum_are_refused_by_name(setting, value):
    with pytest.raises(ValueError, match=setting):
        TuningSpec(**{setting: value})


def test_under_a_time_budget_feature_selection_stops_at_its_share(toy_use_case, splits):
    train, valid = pd.read_parquet(splits["train"]), pd.read_parquet(splits["valid"])
    _, unbounded = engineer_features(train, valid, toy_use_case, progress=lambda line: None)
    assert unbounded.tried and unbounded.stopped == ""
    shown = []
    feature_set, log = engineer_features(train, valid, with_tuning(toy_use_case, time_budget=0.001), shown.append)
    assert log.tried == [] and log.stopped == "stopped: its share of tuning.time_budget was spent"
    assert feature_set.plan == FeatureSet.fit(train, toy_use_case).plan  # the plan it started from
    assert "features: stopped: its share of tuning.time_budget was spent" in shown
    # Untimed (a run with --trials, a Katib trial fitting the plan itself): the whole search, whatever the budget.
    untimed, log = engineer_features(train, valid, with_tuning(toy_use_case, time_budget=0.001), lambda line: None,
                                     timed=False)
    assert log.tried == unbounded.tried and untimed.version == engineer_features(
        train, valid, toy_use_case, progress=lambda line: None)[0].version


def test_the_model_search_spends_what_the_features_step_left_of_the_budget(toy_use_case, splits, tmp_path):
    # Caps too high to reach: the budget ends the search. The features step overran its quarter of 2 s,
    # so the search gets the other 1.5 s, no more.
    use_case = with_tuning(toy_use_case, families={"linear": 100_000}, time_budget=2.0)
    files = {family: str(tmp_path / f"{family}.json") for family in FAMILIES}
    record = search_files(use_case, 0, "optuna", splits["train"], splits["valid"], splits["fs.json"], files,
                          features_seconds=10.0)
    assert record["time_budget"] == 2.0 and record["features_seconds"] == 10.0
    assert 0 < max(record["families"]["linear"]["starts"]) < 1.5 <= record["seconds"]
    shown = budget_markdown(record, lambda score: score, "valid_roc_auc")
    assert "on 300 train and 100 valid rows (the search sample); before it, the features step's search spent " \
           "10.0 s of the budget." in shown


def test_a_sample_too_close_to_the_whole_to_stratify_is_drawn_plainly(toy_use_case):
    # One row left out of 301 cannot hold both classes, and a class of one row cannot be split.
    use_case = with_tuning(toy_use_case, search_rows=300)
    for train in (labelled(301, 100, "t"), labelled(400, 1, "t")):
        sampled, _ = search_sample(train, labelled(100, 20, "v"), use_case)
        assert len(sampled) == 300 and sampled.index.is_unique


def test_with_fewer_rows_than_search_min_rows_the_plan_is_not_searched_and_the_report_says_why(
        toy_use_case, splits, tmp_path):
    from flowline.components.features.fitting import engineer_features_files
    from flowline.features.engineering import search_off

    train, valid = pd.read_parquet(splits["train"]), pd.read_parquet(splits["valid"])
    rows = len(train) + len(valid)
    at_limit = with_features(toy_use_case, search_min_rows=rows)
    _, searched = engineer_features(train, valid, at_limit, progress=lambda line: None)
    assert searched.tried and searched.off == ""
    above = with_features(toy_use_case, search_min_rows=rows + 1)
    shown = []
    feature_set, log = engineer_features(train, valid, above, shown.append)
    assert log.tried == [] and f"{rows:,} train + valid rows, fewer than `features.search_min_rows`" in log.off
    assert feature_set.plan == FeatureSet.fit(train, above).plan  # encodings by cardinality, numbers as they are
    assert shown == [f"features: no search: {log.off}"]
    report = tmp_path / "features.md"
    engineer_features_files(above, splits["train"], splits["valid"], str(tmp_path / "fs.json"), str(report))
    assert f"No search: {log.off}." in report.read_text()
    # An entity column's windows are found by the search alone: it runs on as few rows.
    with_entity = with_features(above, entity_column="plan")
    assert search_off(with_entity, rows) == ""
