"""Model families, the blend and its selection, and train_files from search results."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from flowline.features.feature_set import FeatureSet
from flowline.models.ensemble import (
    MODEL_FILE,
    Ensemble,
    Member,
    ModelError,
    choose_blend,
    cross_fitted_score,
    fit_blend,
)
from flowline.models.families import (
    L1_TOLERANCE,
    L2_TOLERANCE,
    MODEL_FAMILIES,
    TREE_FAMILIES,
    TrainingData,
    booster_gains,
    fit_candidate,
    refit_candidate,
    validation_score,
)
from flowline.models.candidate import REPORT_EVERY
from flowline.components.train.training import averaged_trials, out_of_fold_margins, train_files
from flowline.package.format import TRAINING_FILE
from flowline.search import SearchResult
from flowline.splitting import fold_splits
from flowline.use_case import EnsembleSpec, TuningSpec, UseCase

PARAMS = {
    "xgboost": {"eta": 0.1, "max_depth": 3, "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 0.9,
                "lambda": 1.0, "alpha": 0.01},
    "linear": {"C": 1.0, "l1_ratio": 0.0, "class_weight": "none"},
    "forest": {"num_parallel_tree": 60, "max_depth": 6, "min_child_weight": 1.0, "subsample": 0.8,
               "colsample_bynode": 0.7},
    "mlp": {"depth": 2, "width_1": 16, "width_2": 8, "width_3": 8, "activation": "tanh", "dropout": 0.1,
            "learning_rate": 0.01},
    "lightgbm": {"learning_rate": 0.1, "num_leaves": 8, "min_child_samples": 20, "feature_fraction": 0.9,
                 "bagging_fraction": 0.9, "lambda_l1": 0.01, "lambda_l2": 1.0},
    "catboost": {"learning_rate": 0.1, "depth": 4, "l2_leaf_reg": 3.0, "random_strength": 1.0,
                 "bagging_temperature": 1.0},
}
TUNING = TuningSpec(max_boost_rounds=300, early_stopping_rounds=20, max_epochs=40)


def make_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    plan = rng.choice(["basic", "pro"], n)
    signal = 0.08 * (age - 50) + 1.5 * (plan == "pro") + rng.normal(0, 1, n)
    return pd.DataFrame({
        "id": [f"r{seed}-{i}" for i in range(n)],
        "age": age,
        "income": rng.normal(3000, 500, n),
        "plan": plan,
        "label": np.where(signal > 0.5, "yes", "no"),
    })


@pytest.fixture
def split_files(tmp_path: Path, toy_use_case: UseCase) -> dict[str, str]:
    files = {}
    for name, n, seed in (("train", 600, 1), ("valid", 200, 2)):
        files[name] = str(tmp_path / f"{name}.parquet")
        make_rows(n, seed).to_parquet(files[name])
    files["feature_set"] = str(tmp_path / "feature_set.json")
    FeatureSet.fit(pd.read_parquet(files["train"]), toy_use_case).save(files["feature_set"])
    return files


@pytest.fixture(scope="module")
def data() -> TrainingData:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(900, 5))
    logit = 1.5 * x[:, 0] - x[:, 1] + np.sin(2 * x[:, 2]) + 0.5 * x[:, 3] * x[:, 4]
    y = (rng.random(900) < 1 / (1 + np.exp(-logit))).astype(float)
    return TrainingData("binary", x[:600], y[:600], x[600:], y[600:])


@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
def test_each_family_fits_saves_without_pickle_and_loads_identically(family, data, tmp_path: Path):
    fitted = fit_candidate(family, PARAMS[family], data, TUNING)
    assert fitted.valid_score == pytest.approx(roc_auc_score(data.y_valid, fitted.model.margin(data.x_valid)))
    assert fitted.valid_score > 0.75
    files = fitted.model.save(tmp_path, family)
    for name in files:  # never a pickle: JSON, LightGBM's native text model or CatBoost's native binary model
        if family == "catboost":
            assert (tmp_path / name).read_bytes().startswith(b"CBM1")
            continue
        text = (tmp_path / name).read_text()
        assert text.startswith("tree\nversion=v4\n") if family == "lightgbm" else json.loads(text)
    loaded = MODEL_FAMILIES[family].load(tmp_path, files, "binary")
    assert np.array_equal(loaded.margin(data.x_valid), fitted.model.margin(data.x_valid))


@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
def test_contributions_add_up_to_the_margin(family, data):
    model = fit_candidate(family, PARAMS[family], data, TUNING).model
    contributions = model.contributions(data.x_valid[:20])
    assert contributions.shape == (20, 6)
    assert np.allclose(contributions.sum(axis=1), model.margin(data.x_valid[:20]), atol=1e-4)


def test_xgboost_keeps_only_the_rounds_early_stopping_chose(data):
    fitted = fit_candidate("xgboost", PARAMS["xgboost"], data, TUNING)
    assert fitted.model.booster.num_boosted_rounds() == fitted.iterations < TUNING.max_boost_rounds


@pytest.mark.parametrize("l1_ratio, tolerance", [(0.0, L2_TOLERANCE), (1.0, L1_TOLERANCE)])
def test_the_linear_family_is_scikit_learns_logistic_regression_on_standardised_features(data, l1_ratio, tolerance):
    model = fit_candidate("linear", {**PARAMS["linear"], "l1_ratio": l1_ratio}, data, TUNING).model
    mean, scale = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    reference = LogisticRegression(C=1.0, l1_ratio=l1_ratio, solver="liblinear", tol=tolerance,
                                   random_state=TUNING.seed).fit((data.x_train - mean) / scale, data.y_train)
    assert np.allclose(model.margin(data.x_valid), reference.decision_function((data.x_valid - mean) / scale))


def test_intermediate_scores_are_reported_for_median_stopping(data):
    seen = []
    fit_candidate("xgboost", PARAMS["xgboost"], data, TUNING, report=lambda step, score: seen.append((step, score)))
    assert [step for step, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) >= 2
    epochs = []
    fit_candidate("mlp", PARAMS["mlp"], data, TUNING, report=lambda step, score: epochs.append(step))
    assert epochs[:3] == [1, 2, 3]


def test_a_refit_trains_the_given_iterations_on_all_rows(data):
    x, y = np.vstack([data.x_train, data.x_valid]), np.r_[data.y_train, data.y_valid]
    booster = refit_candidate("xgboost", PARAMS["xgboost"], 17, x, y, "binary", TUNING).booster
    assert booster.num_boosted_rounds() == 17
    network = refit_candidate("mlp", PARAMS["mlp"], 5, x, y, "binary", TUNING).network
    assert np.allclose(network.mean, x.mean(axis=0))


def test_a_blend_of_margins_recovers_known_weights():
    rng = np.random.default_rng(3)
    margins = rng.normal(size=(4000, 3))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(0.2 + 2.0 * margins[:, 0] + 1.0 * margins[:, 1])))).astype(float)
    weights, bias = fit_blend("binary", margins, y)
    assert weights == pytest.approx([2.0, 1.0, 0.0], abs=0.15) and bias == pytest.approx(0.2, abs=0.1)
    assert (weights >= 0).all()
    values = margins @ [3.0, 0.5, 0.0] + 1.0
    weights, bias = fit_blend("regression", margins, values)
    assert weights == pytest.approx([3.0, 0.5, 0.0], abs=1e-6) and bias == pytest.approx(1.0)


def test_cross_fitting_scores_a_useless_member_no_better(data):
    rng = np.random.default_rng(5)
    signal = data.x_valid[:, 0] * 1.5 - data.x_valid[:, 1]
    with_noise = np.column_stack([signal, rng.normal(size=len(signal))])
    assert cross_fitted_score("binary", "roc_auc", with_noise, data.y_valid, 5, 0) <= cross_fitted_score(
        "binary", "roc_auc", signal[:, None], data.y_valid, 5, 0) + 0.005


def test_a_blend_is_chosen_only_when_it_beats_the_best_single_model(data):
    margins = {f: fit_candidate(f, PARAMS[f], data, TUNING).model.margin(data.x_valid) for f in ("xgboost", "linear", "mlp")}
    members, bias, report = choose_blend("binary", "roc_auc", margins, data.y_valid, EnsembleSpec(top_k=3), 0)
    scores = [b["cross_fitted_score"] for b in report["blends"]]
    assert [b["members"] for b in report["blends"]][0] == [report["ranked"][0]["family"]]
    if int(np.argmax(scores)) == 0:
        assert report["selected"] == report["ranked"][0]["family"] and members == [(report["selected"], 1.0)]
    else:
        assert report["selected"] == "ensemble" and len(members) >= 2 and all(w > 0 for _, w in members)
    held_out = [r["held_out_score"] for r in report["ranked"]]
    assert held_out == sorted(held_out, reverse=True)
    assert held_out == sorted((roc_auc_score(data.y_valid, m) for m in margins.values()), reverse=True)
    # A copy of the best candidate adds nothing: it is never blended with itself.
    best = margins["xgboost"]
    members, bias, report = choose_blend("binary", "roc_auc", {"a": best, "b": best.copy()}, data.y_valid,
                                   EnsembleSpec(top_k=2), 0)
    assert members == [("a", 1.0)] and bias == 0.0 and report["selected"] == "a"


def test_a_blend_that_helps_is_chosen():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 3000).astype(float)
    # Two candidates with independent errors: their average ranks better than either.
    margins = {"a": y + rng.normal(0, 1, 3000), "b": y + rng.normal(0, 1, 3000)}
    members, bias, report = choose_blend("binary", "roc_auc", margins, y, EnsembleSpec(top_k=2), 0)
    assert report["selected"] == "ensemble" and [f for f, _ in members] == [r["family"] for r in report["ranked"]]
    assert members[0][1] == pytest.approx(members[1][1], rel=0.3)


def test_with_tuning_metric_auprc_every_family_is_scored_and_pruned_by_average_precision():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(1500, 4))
    y = (2 * x[:, 0] - x[:, 1] + x[:, 2] * x[:, 3] + rng.normal(size=1500) > 3.5).astype(float)  # about 8 %
    data = TrainingData("binary", x[:1000], y[:1000], x[1000:], y[1000:])
    auprc = TUNING.model_copy(update={"metric": "auprc"})
    for family in PARAMS:
        reports = {}
        fitted = fit_candidate(family, PARAMS[family], data, auprc, lambda step, score: reports.setdefault(step, score))
        margins = fitted.model.margin(data.x_valid)
        assert fitted.valid_score == pytest.approx(average_precision_score(data.y_valid, margins))
        assert abs(fitted.valid_score - roc_auc_score(data.y_valid, margins)) > 0.01
        if family == "xgboost":  # the pruning reports: XGBoost's aucpr after 10, 20, ... rounds
            early = fitted.model.booster[:REPORT_EVERY]
            assert reports[1] == pytest.approx(average_precision_score(
                data.y_valid, early.predict(xgb.DMatrix(data.x_valid), output_margin=True)), abs=0.02)
        if family == "lightgbm":
            assert reports[1] == pytest.approx(average_precision_score(
                data.y_valid, fitted.model.booster.predict(data.x_valid, raw_score=True, num_iteration=REPORT_EVERY)))


def test_the_blend_ranks_and_chooses_by_the_tuning_metric():
    rng = np.random.default_rng(4)
    y = (rng.random(4000) < 0.1).astype(float)
    sure = y * (rng.random(4000) < 0.5)  # half the positives at the very top, the rest among the negatives
    margins = {"top": rng.normal(size=4000) + 8 * sure, "bulk": rng.normal(size=4000) + 1.3 * y}
    assert roc_auc_score(y, margins["bulk"]) > roc_auc_score(y, margins["top"])
    assert average_precision_score(y, margins["top"]) > average_precision_score(y, margins["bulk"])
    for metric, first in (("roc_auc", "bulk"), ("auprc", "top")):
        members, _, report = choose_blend("binary", metric, margins, y, EnsembleSpec(top_k=1), 0)
        assert members == [(first, 1.0)] and [r["family"] for r in report["ranked"]][0] == first
        assert report["scored_by"] == {"roc_auc": "ROC-AUC", "auprc": "AUPRC"}[metric]
        assert report["reason"].startswith(f"{first} scores {report['scored_by']} ")


def test_out_of_fold_margins_never_come_from_a_model_that_saw_the_row(data, toy_use_case):
    x, y = np.vstack([data.x_train, data.x_valid]), np.r_[data.y_train, data.y_valid]
    use_case = toy_use_case.model_copy(update={"tuning": TUNING})
    result = SearchResult("linear", PARAMS["linear"], 0.0, 1, 1, 0, "optuna", "valid_roc_auc")
    margins, models = out_of_fold_margins({"linear": result.best_trials(1)}, x, y, use_case)
    margins = margins["linear"]
    in_sample = refit_candidate("linear", PARAMS["linear"], 1, x, y, "binary", TUNING).margin(x)
    assert margins.shape == y.shape and not np.allclose(margins, in_sample)
    assert roc_auc_score(y, margins) < roc_auc_score(y, in_sample)
    # Row 0's margin is what a model trained without row 0's fold predicts.
    from sklearn.model_selection import StratifiedKFold

    fit_rows, held = next(iter(StratifiedKFold(5, shuffle=True, random_state=TUNING.seed).split(x, y)))
    alone = refit_candidate("linear", PARAMS["linear"], 1, x[fit_rows], y[fit_rows], "binary", TUNING)
    assert np.allclose(margins[held], alone.margin(x[held]))
    assert [len(fold) for fold in models["linear"]] == [1] * 5
    assert np.allclose(models["linear"][0][0].margin(x), alone.margin(x))


def test_an_ensemble_saves_loads_and_explains_additively(data, tmp_path: Path):
    members = [Member(f, fit_candidate(f, PARAMS[f], data, TUNING).model, w)
               for f, w in (("xgboost", 0.6), ("linear", 0.3), ("mlp", 0.4))]
    ensemble = Ensemble("binary", members, bias=-0.1)
    ensemble.save(tmp_path / "model")
    loaded = Ensemble.load(tmp_path / "model")
    x = data.x_valid[:30]
    assert np.array_equal(loaded.predict(x), ensemble.predict(x))
    expected = -0.1 + sum(m.weight * m.model.margin(x) for m in members)
    assert np.allclose(loaded.margin(x), expected) and np.allclose(loaded.predict(x), 1 / (1 + np.exp(-expected)))
    assert np.allclose(loaded.contributions(x).sum(axis=1), loaded.margin(x), atol=1e-4)
    assert loaded.families == ["xgboost", "linear", "mlp"]


def test_an_unknown_family_or_format_is_refused_by_name(data, tmp_path: Path):
    Ensemble("binary", [Member("linear", fit_candidate("linear", PARAMS["linear"], data, TUNING).model, 1.0)]).save(
        tmp_path)
    document = json.loads((tmp_path / MODEL_FILE).read_text())
    (tmp_path / MODEL_FILE).write_text(json.dumps({**document, "members": [{**document["members"][0], "family": "svm"}]}))
    with pytest.raises(ModelError, match="unknown model family 'svm'"):
        Ensemble.load(tmp_path)
    (tmp_path / MODEL_FILE).write_text(json.dumps({**document, "format": "other"}))
    with pytest.raises(ModelError, match="format 'other'"):
        Ensemble.load(tmp_path)


def search_results(folder: Path, families, task: str = "binary", iterations: int = 20) -> dict[str, str]:
    files = {}
    for family in families:
        params = PARAMS[family] if task == "binary" or family != "linear" else {"alpha": 1.0}
        files[family] = str(folder / f"{family}.json")
        SearchResult(family, params, 0.0, iterations, 1, 0, "optuna", "valid_roc_auc").save(files[family])
    return files


def test_train_files_chooses_out_of_fold_refits_and_writes_the_holdout(split_files, toy_use_case, tmp_path: Path):
    use_case = toy_use_case.model_copy(update={"tuning": TUNING.model_copy(update={"families": {"xgboost": 1, "linear": 1}})})
    searches = search_results(tmp_path, ("xgboost", "linear", "mlp"))  # mlp is not in the use case: not read
    model_dir, holdout = tmp_path / "model", tmp_path / "holdout.parquet"
    summary = train_files(use_case, split_files["train"], split_files["valid"], split_files["feature_set"], searches,
                          str(model_dir), str(holdout))
    assert [c["family"] for c in summary["candidates"]] == ["xgboost", "linear"]
    assert json.loads((model_dir / TRAINING_FILE).read_text()) == json.loads(json.dumps(summary))
    assert summary["selection"]["rows"] == 800
    ensemble = Ensemble.load(model_dir)
    assert set(ensemble.families) <= {"xgboost", "linear"}
    predictions = pd.read_parquet(holdout)
    # With each row's id (erasure finds a subject there) and sensitive attributes (the bias step's mitigation).
    assert list(predictions.columns) == ["label", "prediction", "id"] and len(predictions) == 800
    # Held-out predictions are out of fold: they differ from the refitted model's in-sample ones.
    feature_set = FeatureSet.load(split_files["feature_set"])
    rows = pd.concat([pd.read_parquet(split_files["train"]), pd.read_parquet(split_files["valid"])])
    in_sample = ensemble.predict(feature_set.transform_training(rows))
    assert roc_auc_score(predictions["label"], predictions["prediction"]) > 0.85
    assert not np.allclose(in_sample, predictions["prediction"])
    assert predictions["id"].tolist() == rows["id"].tolist()  # row i is row i of train + valid
    scores = {c["family"]: c["held_out_score"] for c in summary["candidates"]}
    assert summary["selection"]["ranked"][0]["held_out_score"] == max(scores.values())


# The search's best xgboost trial and two runners-up, best first, each with its own early-stopped rounds.
XGBOOST_TRIALS = [(PARAMS["xgboost"], 20, 0.91), ({**PARAMS["xgboost"], "max_depth": 2, "eta": 0.2}, 12, 0.90),
                  ({**PARAMS["xgboost"], "max_depth": 5, "subsample": 0.7}, 30, 0.89)]


def averaged_search(folder: Path) -> dict[str, str]:
    """Search results whose xgboost has runners-up; linear has one too, but is not a boosted family."""
    (best, rounds, score), *others = XGBOOST_TRIALS
    files = {"xgboost": str(folder / "xgboost.json"), "linear": str(folder / "linear.json")}
    SearchResult("xgboost", best, score, rounds, 3, 0, "optuna", "valid_roc_auc",
                 runners_up=[{"params": p, "iterations": i, "valid_score": v} for p, i, v in others]).save(files["xgboost"])
    SearchResult("linear", PARAMS["linear"], 0.8, 1, 2, 0, "optuna", "valid_roc_auc",
                 runners_up=[{"params": {**PARAMS["linear"], "C": 0.01}, "iterations": 1, "valid_score": 0.7}]
                 ).save(files["linear"])
    return files


@pytest.mark.parametrize("bagged", [False, True])
def test_a_refitted_boosted_family_is_served_as_the_average_of_its_best_trials(split_files, toy_use_case, tmp_path,
                                                                               bagged):
    use_case = toy_use_case.model_copy(update={
        "tuning": TUNING.model_copy(update={"families": {"xgboost": 1}}),
        "ensemble": EnsembleSpec(average_trials=3, bag_max_rows=10_000 if bagged else 0)})
    model_dir, holdout = tmp_path / "model", tmp_path / "holdout.parquet"
    searches = averaged_search(tmp_path)
    summary = train_files(use_case, split_files["train"], split_files["valid"], split_files["feature_set"],
                          searches, str(model_dir), str(holdout))
    # A bagged family is already the average of its fold models: it keeps its best trial.
    trials = XGBOOST_TRIALS[:1] if bagged else XGBOOST_TRIALS
    assert [(c["family"], c["averaged_trials"]) for c in summary["candidates"]] == [("xgboost", len(trials))]
    # Only a boosted family is averaged: linear's runner-up is recorded, not served.
    assert len(averaged_trials("linear", SearchResult.load(searches["linear"]), use_case, bagged=False)) == 1
    feature_set = FeatureSet.load(split_files["feature_set"])
    rows = pd.concat([pd.read_parquet(split_files["train"]), pd.read_parquet(split_files["valid"])])
    x, y = feature_set.transform_training(rows), feature_set.labels(rows)
    # xgboost's held-out margin is the mean of its served trials' fold models' margins.
    expected = np.empty(len(y))
    folds = fold_splits("binary", y, 5, TUNING.seed)
    for fit_rows, held in folds:
        expected[held] = np.mean([refit_candidate("xgboost", p, i, x[fit_rows], y[fit_rows], "binary", use_case.tuning,
                                                  feature_set.layout).margin(x[held]) for p, i, _ in trials], axis=0)
    ranked = {entry["family"]: entry["held_out_score"] for entry in summary["selection"]["ranked"]}
    assert ranked["xgboost"] == pytest.approx(roc_auc_score(y, expected))
    assert np.allclose(pd.read_parquet(holdout)["prediction"], 1 / (1 + np.exp(-expected)))
    ensemble = Ensemble.load(model_dir)
    if bagged:
        # The best trial's five fold models, the family's weight shared by them.
        assert [(m.fold, m.trial, m.weight) for m in ensemble.members] == [(f, None, 1 / 5) for f in range(1, 6)]
        assert summary["selection"]["model"]["members"] == [
            {"family": "xgboost", "weight": pytest.approx(1.0), "folds": 5}]
        assert {m.model.booster.num_boosted_rounds() for m in ensemble.members} == {20}
        assert "best trials" not in summary["selection"]["fit"]
    else:
        # Each trial refitted on all 800 rows, its rounds scaled from 600 train rows as a single member's are.
        assert [(m.fold, m.trial, m.weight) for m in ensemble.members] == [(None, t, 1 / 3) for t in (1, 2, 3)]
        assert [m.model.booster.num_boosted_rounds() for m in ensemble.members] == [27, 16, 40]
        assert sorted(p.name for p in model_dir.glob("xgboost-*")) == [f"xgboost-trial{t}.json" for t in (1, 2, 3)]
        assert summary["selection"]["model"]["members"] == [{"family": "xgboost", "weight": pytest.approx(1.0),
                                                             "trials": 3}]
        assert "xgboost as its 3 best trials, averaged" in summary["selection"]["fit"]
    served = ensemble.margin(x)
    assert np.allclose(served, np.mean([m.model.margin(x) for m in ensemble.members], axis=0))
    assert np.allclose(ensemble.contributions(x[:20]).sum(axis=1), served[:20], atol=1e-4)
    document = json.loads((model_dir / MODEL_FILE).read_text())
    (model_dir / MODEL_FILE).write_text(json.dumps({**document, "members": [{**document["members"][0], "trial": 1.5}]}))
    with pytest.raises(ModelError, match="trial 1.5"):
        Ensemble.load(model_dir)


def test_regression_candidates_train_on_squared_error(tmp_path: Path):
    use_case = UseCase.model_validate({
        "name": "spend", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "columns": {"visits": {"type": "number"}},
        "tuning": {"families": {"xgboost": 1, "linear": 1}, "max_boost_rounds": 300},
    })
    rng = np.random.default_rng(3)
    files = {}
    for name, n in (("train", 400), ("valid", 100)):
        visits = rng.uniform(0, 10, n)
        files[name] = str(tmp_path / f"{name}.parquet")
        pd.DataFrame({"visits": visits, "spend": 3 * visits + rng.normal(0, 1, n)}).to_parquet(files[name])
    FeatureSet.fit(pd.read_parquet(files["train"]), use_case).save(tmp_path / "fs.json")
    summary = train_files(use_case, files["train"], files["valid"], str(tmp_path / "fs.json"),
                          search_results(tmp_path, ("xgboost", "linear"), task="regression"), str(tmp_path / "m"),
                          str(tmp_path / "holdout.parquet"))
    assert all(-c["valid_score"] < 1.5 for c in summary["candidates"])  # RMSE near the noise level of 1
    feature_set = FeatureSet.load(tmp_path / "fs.json")
    data = TrainingData.from_splits(feature_set, pd.read_parquet(files["train"]), pd.read_parquet(files["valid"]),
                                    "regression")
    booster = fit_candidate("xgboost", PARAMS["xgboost"], data, use_case.tuning).model.booster
    assert json.loads(booster.save_config())["learner"]["objective"]["name"] == "reg:squarederror"


def test_boosting_rounds_scale_with_the_rows_of_the_refit(split_files, toy_use_case, tmp_path: Path):
    use_case = toy_use_case.model_copy(update={"tuning": TUNING.model_copy(update={"families": {"xgboost": 1}}),
                                               "ensemble": EnsembleSpec(bag_max_rows=0)})  # always refit
    train_files(use_case, split_files["train"], split_files["valid"], split_files["feature_set"],
                search_results(tmp_path, ("xgboost",), iterations=20), str(tmp_path / "model"),
                str(tmp_path / "holdout.parquet"))
    (member,) = Ensemble.load(tmp_path / "model").members
    assert member.family == "xgboost" and member.weight == 1.0
    assert member.model.booster.num_boosted_rounds() == 27  # 20 rounds on 600 train rows -> 27 on 800


def test_small_data_is_served_as_the_fold_models_that_made_the_holdout(split_files, toy_use_case, tmp_path: Path):
    use_case = toy_use_case.model_copy(update={"tuning": TUNING.model_copy(update={"families": {"xgboost": 1}})})
    assert len(pd.read_parquet(split_files["train"])) + len(pd.read_parquet(split_files["valid"])) == 800
    model_dir, holdout = tmp_path / "model", tmp_path / "holdout.parquet"
    summary = train_files(use_case, split_files["train"], split_files["valid"], split_files["feature_set"],
                          search_results(tmp_path, ("xgboost",), iterations=20), str(model_dir), str(holdout))
    assert summary["selection"]["bagged"] and "5 fold models" in summary["selection"]["fit"]
    assert summary["selection"]["model"]["members"] == [{"family": "xgboost", "weight": pytest.approx(1.0), "folds": 5}]
    ensemble = Ensemble.load(model_dir)
    assert [(m.family, m.fold, m.weight) for m in ensemble.members] == [("xgboost", k, 0.2) for k in range(1, 6)]
    assert sorted(p.name for p in model_dir.glob("xgboost-fold*")) == [f"xgboost-fold{k}.json" for k in range(1, 6)]
    # Each fold model keeps the search's 20 rounds (it fits on 4/5 of the rows, as many as train), no refit.
    assert {m.model.booster.num_boosted_rounds() for m in ensemble.members} == {20}
    feature_set = FeatureSet.load(split_files["feature_set"])
    rows = pd.concat([pd.read_parquet(split_files["train"]), pd.read_parquet(split_files["valid"])])
    x, y = feature_set.transform_training(rows), feature_set.labels(rows)
    predictions = pd.read_parquet(holdout)["prediction"].to_numpy()
    # Fold k's model is the one whose predictions on fold k's held-out rows are the holdout.
    for member, (_, held) in zip(ensemble.members, fold_splits("binary", y, 5, TUNING.seed)):
        assert np.allclose(1 / (1 + np.exp(-member.model.margin(x[held]))), predictions[held])
    served = ensemble.margin(x)
    assert np.allclose(served, np.mean([m.model.margin(x) for m in ensemble.members], axis=0))
    assert np.allclose(ensemble.contributions(x[:20]).sum(axis=1), served[:20], atol=1e-4)
    document = json.loads((model_dir / MODEL_FILE).read_text())
    (model_dir / MODEL_FILE).write_text(json.dumps({**document, "members": [{**document["members"][0], "fold": "1"}]}))
    with pytest.raises(ModelError, match="fold '1'"):
        Ensemble.load(model_dir)


def spend_data(seed: int = 5) -> TrainingData:
    """Skewed, non-negative spend: zero for most rows, log-linear in two features for the rest."""
    rng = np.random.default_rng(seed)

    def rows(n):
        x = rng.normal(0, 1, (n, 2))
        buys = rng.uniform(size=n) < 1 / (1 + np.exp(-(x[:, 0] - 0.8)))
        return x, np.where(buys, rng.gamma(2.0, np.exp(2 + 0.6 * x[:, 1]) / 2), 0.0)

    (x_train, y_train), (x_valid, y_valid) = rows(3000), rows(1000)
    return TrainingData("regression", x_train, y_train, x_valid, y_valid)


TWEEDIE = TuningSpec(objective="tweedie", max_boost_rounds=300, early_stopping_rounds=20)
TWEEDIE_PARAMS = {**PARAMS, "linear": {"alpha": 1e-4}}


@pytest.mark.parametrize("family", ["xgboost", "forest", "linear", "lightgbm", "catboost"])
def test_tweedie_models_predict_non_negative_spend_and_explain_it_additively(family, tmp_path: Path):
    data = spend_data()
    fitted = fit_candidate(family, TWEEDIE_PARAMS[family], data, TWEEDIE)
    predictions = fitted.model.margin(data.x_valid)
    assert (predictions > 0).all()
    # The log link keeps the total near the labels' (a squared-error fit would not be bounded below).
    assert predictions.sum() == pytest.approx(data.y_valid.sum(), rel=0.15)
    contributions = fitted.model.contributions(data.x_valid[:50])
    np.testing.assert_allclose(contributions.sum(axis=1), predictions[:50], rtol=1e-4)
    files = fitted.model.save(tmp_path, family)
    loaded = MODEL_FAMILIES[family].load(tmp_path, files, "regression")
    np.testing.assert_allclose(loaded.margin(data.x_valid), predictions, rtol=1e-6)


def test_tweedie_xgboost_uses_the_tweedie_objective_with_the_use_cases_power():
    booster = fit_candidate("xgboost", PARAMS["xgboost"], spend_data(), TWEEDIE.model_copy(
        update={"tweedie_power": 1.3})).model.booster
    config = json.loads(booster.save_config())["learner"]["objective"]
    assert config["name"] == "reg:tweedie"
    assert float(config["tweedie_regression_param"]["tweedie_variance_power"]) == pytest.approx(1.3)


def test_a_tweedie_glm_holds_its_score_to_the_training_range():
    data = spend_data()
    model = fit_candidate("linear", TWEEDIE_PARAMS["linear"], data, TWEEDIE).model
    far = np.array([[40.0, 40.0], [-40.0, -40.0]])  # far outside anything seen in training
    low, high = model.score_range
    np.testing.assert_allclose(np.log(model.margin(far)), [high, low])
    np.testing.assert_allclose(model.contributions(far).sum(axis=1), model.margin(far), rtol=1e-6)


def test_tuned_class_weight_reaches_xgboost_and_the_forest(data):
    weighted = {family: fit_candidate(family, {**PARAMS[family], "scale_pos_weight": 20.0}, data, TUNING).model
                for family in ("xgboost", "forest")}
    plain = {family: fit_candidate(family, PARAMS[family], data, TUNING).model for family in ("xgboost", "forest")}
    for family in weighted:
        objective = json.loads(weighted[family].booster.save_config())["learner"]["objective"]
        assert float(objective["reg_loss_param"]["scale_pos_weight"]) == 20
        # Weighting the positives up moves the log-odds up.
        assert weighted[family].margin(data.x_valid).mean() > plain[family].margin(data.x_valid).mean() + 0.5


def test_a_floored_regression_model_never_predicts_spend_below_zero_and_keeps_its_floor(tmp_path: Path):
    data = spend_data()
    squared = TuningSpec(max_boost_rounds=300, early_stopping_rounds=20)
    members = [Member(f, fit_candidate(f, TWEEDIE_PARAMS[f], data, squared).model, 0.5) for f in ("xgboost", "linear")]
    free = Ensemble("regression", members, bias=-5.0)
    assert (free.predict(data.x_valid) < 0).any()  # squared-error members and a negative bias go below zero
    Ensemble("regression", members, bias=-5.0, floor=0.0).save(tmp_path / "model")
    floored = Ensemble.load(tmp_path / "model")
    assert floored.floor == 0.0 and floored.describe()["floor"] == 0.0
    np.testing.assert_array_equal(floored.predict(data.x_valid), np.maximum(free.predict(data.x_valid), 0.0))
    # The clip is its own term: the base value stays the model's expected value on every row, the contributions
    # explain the unclipped margin, and base + contributions + floor adjustment add up to the (floored) prediction.
    contributions = floored.contributions(data.x_valid)
    adjustment = floored.floor_adjustment(contributions)
    clipped = free.predict(data.x_valid) < 0
    assert np.ptp(contributions[:, -1]) < 1e-6  # one base value
    np.testing.assert_allclose(contributions.sum(axis=1), free.predict(data.x_valid), atol=1e-4)
    np.testing.assert_allclose(adjustment[clipped], -free.predict(data.x_valid)[clipped], atol=1e-4)
    assert (adjustment[~clipped] == 0).all()
    np.testing.assert_allclose(contributions.sum(axis=1) + adjustment, floored.predict(data.x_valid), atol=1e-4)
    per_column, base, by_column_adjustment = floored.column_contributions(data.x_valid, np.eye(data.x_valid.shape[1]))
    np.testing.assert_array_equal(base, contributions[:, -1])
    np.testing.assert_array_equal(by_column_adjustment, adjustment)
    document = json.loads((tmp_path / "model" / MODEL_FILE).read_text())
    (tmp_path / "model" / MODEL_FILE).write_text(json.dumps({**document, "floor": "zero"}))
    with pytest.raises(ModelError, match="floor 'zero', expected a number"):
        Ensemble.load(tmp_path / "model")


def test_a_blend_of_non_negative_amounts_never_goes_below_zero():
    rng = np.random.default_rng(0)
    y = rng.gamma(0.3, 50, 2000)
    # Two members that overshoot: least squares would take a negative bias to pull them down.
    margins = np.column_stack([y * 1.5 + 20 + rng.normal(0, 5, 2000).clip(-20),
                               y * 1.2 + 25 + rng.normal(0, 8, 2000).clip(-25)])
    free_weights, free_bias = fit_blend("regression", margins, y)
    weights, bias = fit_blend("regression", margins, y, non_negative=True)
    assert free_bias < 0 and (margins @ free_weights + free_bias).min() < 0
    assert bias >= 0 and (weights >= 0).all() and (margins @ weights + bias).min() >= 0


def coded_data() -> TrainingData:
    """A label that depends on a category through an arbitrary grouping, with its one-hot and its code."""
    from flowline.features.kinds import FeatureLayout

    rng = np.random.default_rng(11)
    n = 3000
    category = rng.integers(0, 12, n)
    noise = rng.normal(size=n)
    y = (rng.random(n) < np.where(np.isin(category, [1, 4, 6, 9, 11]), 0.8, 0.15)).astype(float)
    x = np.column_stack([np.eye(12)[category], noise, category.astype(float)])  # 12 indicators, a number, the code
    layout = FeatureLayout(trees=(12, 13), tree_types=("q", "c"), dense=tuple(range(13)))
    return TrainingData("binary", x[:2000], y[:2000], x[2000:], y[2000:], layout=layout)


@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
def test_each_family_reads_only_its_columns_and_explains_at_full_width(family, tmp_path: Path):
    data = coded_data()
    fitted = fit_candidate(family, PARAMS[family], data, TUNING)
    reads = data.layout.trees if family in TREE_FAMILIES else data.layout.dense
    assert fitted.model.columns == reads and fitted.valid_score > 0.75
    x = data.x_valid[:40]
    contributions = fitted.model.contributions(x)
    assert contributions.shape == (40, data.x_valid.shape[1] + 1)
    assert np.allclose(contributions.sum(axis=1), fitted.model.margin(x), atol=1e-3)
    unread = [i for i in range(data.x_valid.shape[1]) if i not in reads]
    assert not contributions[:, unread].any()
    if family == "xgboost":  # the code is a categorical feature: one split can group the five "high" categories
        assert fitted.model.model.booster.feature_types == ["q", "c"]
    ensemble = Ensemble("binary", [Member(family, fitted.model, 1.0)])
    ensemble.save(tmp_path / "model")
    assert np.array_equal(Ensemble.load(tmp_path / "model").margin(x), ensemble.margin(x))


def test_a_refit_keeps_the_layout():
    data = coded_data()
    model = refit_candidate("xgboost", PARAMS["xgboost"], 20, data.x_train, data.y_train, "binary", TUNING, data.layout)
    assert model.columns == data.layout.trees and model.model.booster.num_boosted_rounds() == 20


def categorical_split_features(booster) -> set[int]:
    """The columns a LightGBM model splits on by category (its own column index)."""
    def walk(node: dict):
        if "split_feature" in node:
            if node["decision_type"] == "==":
                yield node["split_feature"]
            yield from walk(node["left_child"])
            yield from walk(node["right_child"])

    return {feature for tree in booster.dump_model()["tree_info"] for feature in walk(tree["tree_structure"])}


def test_lightgbm_splits_the_category_codes_natively_and_a_missing_or_unseen_code_never_fails():
    data = coded_data()
    fitted = fit_candidate("lightgbm", PARAMS["lightgbm"], data, TUNING)
    assert categorical_split_features(fitted.model.model.booster) == {1}  # the code: the trees' second column
    x = np.repeat(data.x_valid[:1], 4, axis=0)
    x[:, 13] = [np.nan, 99.0, 4.0, 0.0]  # missing (an unknown category's code), never seen, a "high" one, a "low" one
    assert_scores_and_explains(fitted.model, x)
    margins = fitted.model.margin(x)
    assert margins[0] == margins[1] and margins[2] > margins[3] + 1
    gains = booster_gains(fitted.model)  # full-width columns, as the feature search reads them
    assert set(gains) == {12, 13} and max(gains, key=gains.get) == 13


def coded_splits(use_case: UseCase) -> tuple[FeatureSet, TrainingData, np.ndarray]:
    """A FeatureSet with category codes (`native_categorical`) fitted on toy rows, the encoded splits, and five
    valid rows of a plan never seen in training."""
    from dataclasses import replace

    from flowline.features.plan import default_plan

    train, valid = make_rows(600, 1), make_rows(200, 2)
    feature_set = FeatureSet.fit(train, use_case, replace(default_plan(train, use_case), native_categorical=True))
    unseen = feature_set.transform(valid.head(5).assign(plan="enterprise"))
    return feature_set, TrainingData.from_splits(feature_set, train, valid, "binary"), unseen


def assert_scores_and_explains(model, x: np.ndarray) -> None:
    margins = model.margin(x)
    assert np.isfinite(margins).all()
    np.testing.assert_allclose(model.contributions(x).sum(axis=1), margins, atol=1e-6)


def test_lightgbm_reads_a_feature_sets_codes_and_scores_an_unseen_category(toy_use_case):
    feature_set, data, unseen = coded_splits(toy_use_case)
    fitted = fit_candidate("lightgbm", PARAMS["lightgbm"], data, TUNING)
    code = feature_set.feature_names.index("code(plan)")
    assert fitted.valid_score > 0.85 and code in fitted.model.columns
    assert categorical_split_features(fitted.model.model.booster) == {fitted.model.columns.index(code)}
    assert np.isnan(unseen[:, code]).all()
    assert_scores_and_explains(fitted.model, unseen)


def test_lightgbm_is_seeded_keeps_its_early_stopped_rounds_and_reports_every_ten(data):
    seen = []
    fitted = fit_candidate("lightgbm", PARAMS["lightgbm"], data, TUNING,
                           report=lambda step, score: seen.append((step, score)))
    model = fitted.model
    assert model.booster.current_iteration() == fitted.iterations < TUNING.max_boost_rounds
    assert [step for step, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) >= 2
    assert seen[fitted.iterations // 10 - 1][1] == pytest.approx(
        roc_auc_score(data.y_valid, model.margin(data.x_valid)), abs=0.02)  # the reports are valid's ROC-AUC
    margins = model.margin(data.x_valid)
    again = fit_candidate("lightgbm", PARAMS["lightgbm"], data, TUNING).model
    assert np.array_equal(again.margin(data.x_valid), margins)
    reseeded = fit_candidate("lightgbm", PARAMS["lightgbm"], data, TUNING.model_copy(update={"seed": 1})).model
    assert not np.array_equal(reseeded.margin(data.x_valid), margins)  # rows and columns are bagged by the seed
    model.set_threads(1)
    assert np.array_equal(model.margin(data.x_valid), margins)
    x, y = np.vstack([data.x_train, data.x_valid]), np.r_[data.y_train, data.y_valid]
    assert refit_candidate("lightgbm", PARAMS["lightgbm"], 17, x, y, "binary", TUNING).booster.current_iteration() == 17


def test_lightgbm_takes_the_tuned_class_weight_and_the_use_cases_regression_objective(data, tmp_path: Path):
    weighted, plain = (refit_candidate("lightgbm", params, 50, data.x_train, data.y_train, "binary", TUNING)
                       for params in ({**PARAMS["lightgbm"], "scale_pos_weight": 20.0}, PARAMS["lightgbm"]))
    assert weighted.booster.params["scale_pos_weight"] == 20
    # Weighting the positives up moves the log-odds up.
    assert weighted.margin(data.x_valid).mean() > plain.margin(data.x_valid).mean() + 0.5
    spend = spend_data()
    tweedie = fit_candidate("lightgbm", PARAMS["lightgbm"], spend, TWEEDIE.model_copy(update={"tweedie_power": 1.3}))
    squared = fit_candidate("lightgbm", PARAMS["lightgbm"], spend, TUNING)
    for fitted, objective, log_link in ((tweedie, "tweedie", True), (squared, "regression", False)):
        loaded = MODEL_FAMILIES["lightgbm"].load(tmp_path, fitted.model.save(tmp_path, objective), "regression")
        assert loaded.booster.params["objective"] == objective and loaded.log_link == log_link
        np.testing.assert_array_equal(loaded.margin(spend.x_valid), fitted.model.margin(spend.x_valid))
        assert fitted.valid_score == pytest.approx(validation_score("regression", "roc_auc", spend.y_valid,
                                                                    loaded.booster.predict(spend.x_valid)))
    assert tweedie.model.booster.params["tweedie_variance_power"] == pytest.approx(1.3)


def test_catboost_is_seeded_keeps_its_early_stopped_rounds_and_reports_every_ten(data, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # CatBoost writes its training log (catboost_info/) here unless told not to
    seen = []
    fitted = fit_candidate("catboost", PARAMS["catboost"], data, TUNING,
                           report=lambda step, score: seen.append((step, score)))
    model = fitted.model
    assert model.model.tree_count_ == fitted.iterations < TUNING.max_boost_rounds
    assert [step for step, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) >= 2
    kept = seen[fitted.iterations // REPORT_EVERY - 1][1]  # the last report before the kept round
    assert kept == pytest.approx(roc_auc_score(data.y_valid, model.margin(data.x_valid)), abs=0.02)
    margins = model.margin(data.x_valid)
    again = fit_candidate("catboost", PARAMS["catboost"], data, TUNING).model
    assert np.array_equal(again.margin(data.x_valid), margins)
    reseeded = fit_candidate("catboost", PARAMS["catboost"], data, TUNING.model_copy(update={"seed": 1})).model
    assert not np.array_equal(reseeded.margin(data.x_valid), margins)  # the bootstrap's weights follow the seed
    model.set_threads(1)
    assert np.array_equal(model.margin(data.x_valid), margins)
    x, y = np.vstack([data.x_train, data.x_valid]), np.r_[data.y_train, data.y_valid]
    assert refit_candidate("catboost", PARAMS["catboost"], 17, x, y, "binary", TUNING).model.tree_count_ == 17
    auprc = []
    fitted = fit_candidate("catboost", PARAMS["catboost"], data, TUNING.model_copy(update={"metric": "auprc"}),
                           report=lambda step, score: auprc.append(score))
    assert auprc[fitted.iterations // REPORT_EVERY - 1] == pytest.approx(
        average_precision_score(data.y_valid, fitted.model.margin(data.x_valid)), abs=0.03)
    assert auprc != [score for _, score in seen][:len(auprc)]  # AUPRC, not the ROC-AUC reported above
    weighted = []  # a tuned class weight changes the training, not how valid is scored
    fitted = fit_candidate("catboost", {**PARAMS["catboost"], "scale_pos_weight": 5.0}, data,
                           TUNING.model_copy(update={"metric": "auprc"}),
                           report=lambda step, score: weighted.append(score))
    assert weighted[fitted.iterations // REPORT_EVERY - 1] == pytest.approx(
        average_precision_score(data.y_valid, fitted.model.margin(data.x_valid)), abs=0.03)
    assert list(tmp_path.iterdir()) == []  # no training log written: pods run on a read-only filesystem


def test_catboost_takes_the_tuned_class_weight_and_the_use_cases_regression_objective(data, tmp_path: Path):
    weighted, plain = (refit_candidate("catboost", params, 50, data.x_train, data.y_train, "binary", TUNING)
                       for params in ({**PARAMS["catboost"], "scale_pos_weight": 20.0}, PARAMS["catboost"]))
    assert weighted.model.get_params()["scale_pos_weight"] == 20
    # Weighting the positives up moves the log-odds up.
    assert weighted.margin(data.x_valid).mean() > plain.margin(data.x_valid).mean() + 0.5
    spend = spend_data()
    tweedie = fit_candidate("catboost", PARAMS["catboost"], spend, TWEEDIE.model_copy(update={"tweedie_power": 1.3}))
    squared = fit_candidate("catboost", PARAMS["catboost"], spend, TUNING)
    for fitted, loss, log_link in ((tweedie, "Tweedie:variance_power=1.3", True), (squared, "RMSE", False)):
        loaded = MODEL_FAMILIES["catboost"].load(tmp_path, fitted.model.save(tmp_path, loss[:5]), "regression")
        assert loaded.model.get_params()["loss_function"] == loss and loaded.log_link == log_link
        np.testing.assert_array_equal(loaded.margin(spend.x_valid), fitted.model.margin(spend.x_valid))
        assert fitted.valid_score == pytest.approx(validation_score("regression", "roc_auc", spend.y_valid,
                                                                    loaded.margin(spend.x_valid)))


def test_catboost_reads_the_encodings_not_the_category_codes(toy_use_case):
    feature_set, data, unseen = coded_splits(toy_use_case)
    fitted = fit_candidate("catboost", PARAMS["catboost"], data, TUNING)
    assert fitted.valid_score > 0.85 and fitted.model.columns == feature_set.layout.dense
    assert feature_set.feature_names.index("code(plan)") not in fitted.model.columns
    assert_scores_and_explains(fitted.model, unseen)


@pytest.mark.parametrize("family, rounds, version, saved", [
    ("lightgbm", lambda model: model.booster.current_iteration(), "4.7.0", "lightgbm.txt"),
    ("catboost", lambda model: model.model.tree_count_, "1.2.10", "catboost.cbm"),
])
def test_boosted_rounds_scale_with_the_rows_of_the_refit(family, rounds, version, saved, split_files, toy_use_case,
                                                          tmp_path: Path):
    use_case = toy_use_case.model_copy(update={"tuning": TUNING.model_copy(update={"families": {family: 1}}),
                                               "ensemble": EnsembleSpec(bag_max_rows=0)})  # always refit
    summary = train_files(use_case, split_files["train"], split_files["valid"], split_files["feature_set"],
                          search_results(tmp_path, (family,), iterations=20), str(tmp_path / "model"),
                          str(tmp_path / "holdout.parquet"))
    (member,) = Ensemble.load(tmp_path / "model").members
    assert member.family == family and rounds(member.model) == 27  # 20 on 600 rows -> 27 on 800
    assert summary[f"{family}_version"] == version
    files = sorted(path.name for path in (tmp_path / "model").iterdir())
    assert files == [saved, "model.json", "training.json"]


def test_registering_the_families_and_training_do_not_import_catboost_until_a_catboost_model_needs_it():
    # Importing CatBoost takes about a quarter of a second; a step or server whose use case lists no catboost
    # member should not pay it.
    probe = """
import sys
import numpy as np
import flowline.components.train.training
import flowline.models.ensemble
from flowline.models.families import MODEL_FAMILIES, TuningSpec
assert "catboost" not in sys.modules, "catboost imported with the families"
MODEL_FAMILIES["catboost"].refit({"depth": 2}, 3, np.eye(4), np.array([0.0, 1.0, 0.0, 1.0]), "binary", TuningSpec())
assert "catboost" in sys.modules
"""
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_the_mlps_shapley_estimate_is_near_a_long_one_on_a_wide_input(monkeypatch):
    """8 permutations (and their reverses) left the largest column's attribution 20-50 % off on churn's 45
    encoded features, and another column on top for 2 rows of 8 (the explanations audit)."""
    from flowline.models import families

    rng = np.random.default_rng(3)
    x = rng.normal(size=(1200, 40))
    signal = x[:, 0] * x[:, 1] + np.tanh(x[:, 2:12].sum(axis=1)) + 0.5 * x[:, 12:20] @ rng.normal(size=8)
    y = (signal + rng.normal(0, 0.5, len(x)) > 0).astype(int)
    data = TrainingData("binary", x[:1000], y[:1000], x[1000:], y[1000:])
    model = fit_candidate("mlp", {**PARAMS["mlp"], "width_1": 32, "width_2": 16}, data, TUNING).model
    rows = x[1000:1012]
    served = model.contributions(rows)[:, :-1]
    monkeypatch.setattr(families, "SHAP_PERMUTATIONS", 400)
    reference = model.contributions(rows)[:, :-1]
    error = np.abs(served - reference).max(axis=1) / np.abs(reference).max(axis=1)
    assert error.max() < 0.1, error.round(3)  # 8 permutations: 0.12, and another column on top of one row
    assert (np.abs(served).argmax(axis=1) == np.abs(reference).argmax(axis=1)).all()
