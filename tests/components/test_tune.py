"""Search spaces to Optuna and to Katib, the Optuna search, and the Katib backend up to what it submits."""

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from kubeflow.katib import KatibClient
from stand_in_api import OPTIMAL, experiment_server, katib_trial, unreachable_or_refusing

from flowline.katib_search import KatibError, katib_search
from flowline.models.candidate import REPORT_EVERY
from flowline.models.families import TRIAL_FOLDS, TrainingData, fit_candidate, trial_score
from flowline.search import SearchResult, family_objective, optuna_search, seeded_study
from flowline.search_space import (
    CategoricalParameter,
    FloatParameter,
    IntParameter,
    SearchSpaceError,
    search_space,
)
from flowline.splitting import fold_splits
from flowline.tuning import resolve_backend, tune_files
from flowline.use_case import FAMILIES, TuningSpec
from manifest_helpers import katib_errors, trial_args

EXPERIMENTS = "/apis/kubeflow.org/v1beta1/namespaces/flowline/experiments"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_space_becomes_optuna_distributions(family, task):
    space = search_space(family, task, TuningSpec())
    distributions = space.optuna_distributions()
    assert list(distributions) == [p.name for p in space.parameters]
    for p in space.parameters:
        d = distributions[p.name]
        if isinstance(p, CategoricalParameter):
            assert isinstance(d, optuna.distributions.CategoricalDistribution) and d.choices == p.choices
        else:
            kind = optuna.distributions.FloatDistribution if isinstance(p, FloatParameter) else \
                optuna.distributions.IntDistribution
            assert isinstance(d, kind) and (d.low, d.high, d.log) == (p.low, p.high, p.log)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    drawn = space.suggest(trial)
    assert trial.distributions == distributions and space.parse(drawn) == drawn


@pytest.mark.parametrize("family", FAMILIES)
def test_a_space_becomes_katib_parameters(family):
    space = search_space(family, "binary", TuningSpec())
    for p, spec in zip(space.parameters, space.katib_parameters(), strict=True):
        assert spec.name == p.name
        feasible = spec.feasible_space
        if isinstance(p, CategoricalParameter):
            assert spec.parameter_type == "categorical" and feasible.list == [str(c) for c in p.choices]
        else:
            assert spec.parameter_type == ("double" if isinstance(p, FloatParameter) else "int")
            assert (float(feasible.min), float(feasible.max)) == (p.low, p.high)
            assert feasible.distribution == ("logUniform" if p.log else "uniform")


def test_katib_assignments_parse_back_to_typed_values_and_strays_are_refused():
    space = search_space("mlp", "binary", TuningSpec())
    parsed = space.parse({"depth": "2", "width_1": "64", "width_2": "32", "width_3": "16", "activation": "tanh",
                          "dropout": "0.25", "learning_rate": "0.001"})
    assert parsed == {"depth": 2, "width_1": 64, "width_2": 32, "width_3": 16, "activation": "tanh", "dropout": 0.25,
                      "learning_rate": 0.001}
    linear = search_space("linear", "binary", TuningSpec())
    assert linear.parse({"C": "1", "l1_ratio": "1.0", "class_weight": "none"})["l1_ratio"] == 1.0
    good = {"C": "1", "l1_ratio": "0.0", "class_weight": "none"}
    for bad, message in [({**good, "C": "100"}, "outside"), ({**good, "C": "lots"}, "not a number"),
                         ({**good, "class_weight": "auto"}, "not one of"), ({**good, "gamma": "1"}, "unknown"),
                         ({"C": "1"}, "missing parameter 'l1_ratio'")]:
        with pytest.raises(SearchSpaceError, match=message):
            linear.parse(bad)
    with pytest.raises(SearchSpaceError, match="unknown model family 'svm'"):
        search_space("svm", "binary", TuningSpec())


def test_every_parameter_kind_is_declared_once():
    for family in FAMILIES:
        names = [p.name for p in search_space(family, "binary", TuningSpec()).parameters]
        assert len(names) == len(set(names))
        assert all(isinstance(p, (FloatParameter, IntParameter, CategoricalParameter))
                   for p in search_space(family, "binary", TuningSpec()).parameters)


# Every space a family can search: binary with and without class weighting, regression squared and tweedie.
SPACE_VARIANTS = [("binary", TuningSpec()), ("binary", TuningSpec(class_weighting=True)),
                  ("regression", TuningSpec()), ("regression", TuningSpec(objective="tweedie"))]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("task", "tuning"), SPACE_VARIANTS)
def test_every_portfolio_point_names_each_parameter_and_lies_inside_its_space(family, task, tuning):
    space = search_space(family, task, tuning)
    distributions = space.optuna_distributions()
    assert 2 <= len(space.portfolio) <= 4
    for point in space.portfolio:
        assert set(point) == set(distributions), f"{family} ({task}): {sorted(point)}"
        for name, value in point.items():
            assert distributions[name]._contains(distributions[name].to_internal_repr(value)), f"{family}: {name}"
        assert space.parse(point) == point
    assert len({tuple(sorted(point.items())) for point in space.portfolio}) == len(space.portfolio)


def test_class_weighting_starts_the_tree_families_unweighted():
    for family in ("xgboost", "forest", "lightgbm"):
        plain, weighted = (search_space(family, "binary", TuningSpec(class_weighting=on)) for on in (False, True))
        assert weighted.portfolio == tuple({**point, "scale_pos_weight": 1.0} for point in plain.portfolio)


def test_the_optuna_search_is_seeded_and_stops_weak_trials_early(data):
    tuning = TuningSpec(max_boost_rounds=200, early_stopping_rounds=20)
    shown: list[str] = []
    first = optuna_search("xgboost", data, tuning, 12, progress=shown.append)
    again = optuna_search("xgboost", data, tuning, 12, progress=lambda line: None)
    assert first == again and first.trials == 12 and first.backend == "optuna"
    assert search_space("xgboost", "binary", TuningSpec()).parse(first.params) == first.params
    assert first.stopped_early > 0 and sum("stopped early (below the median)" in line for line in shown) == first.stopped_early
    assert "tune (xgboost): trial 12/12" in shown[-1]
    # The runners-up are the trials that completed, best first; none stopped early is among them.
    scores = [float(line.split("score ")[1].split()[0]) for line in shown if " score " in line]
    assert len(first.runners_up) == len(scores) - 1 == 12 - first.stopped_early - 1
    ranked = [t["valid_score"] for t in first.runners_up]
    assert ranked == sorted(ranked, reverse=True) and first.valid_score >= ranked[0]
    assert sorted(round(t.valid_score, 4) for t in first.best_trials(12)) == sorted(scores)
    assert first.best_trials(3)[0].params == first.params and len(first.best_trials(3)) == 3
    assert all(t.iterations >= 1 for t in first.best_trials(12))


@pytest.mark.parametrize("family", ["linear", "xgboost"])
def test_a_studys_first_trials_are_its_portfolio_in_order_then_tpe_seeded(data, family):
    tuning = TuningSpec(max_boost_rounds=100, early_stopping_rounds=20, seed=3)
    space = search_space(family, "binary", tuning)
    runs = []
    for _ in range(2):
        study = seeded_study(tuning, space)
        study.optimize(family_objective(family, space, data, tuning), n_trials=len(space.portfolio) + 2)
        runs.append([(t.params, t.value, t.state) for t in study.trials])
    assert [params for params, _, _ in runs[0][:len(space.portfolio)]] == list(space.portfolio)
    assert all(params not in space.portfolio for params, _, _ in runs[0][len(space.portfolio):])
    assert runs[0] == runs[1]  # one seed, one search


def test_xgboost_reports_the_round_early_stopping_ends_on_whatever_the_memory_layout(data):
    """XGBoost keeps callbacks in a set and stops calling them once one says stop: with early stopping and the
    reporter as two callbacks, whether the last round reached the pruner depended on their addresses, and one
    seeded claims search served AUPRC 0.2130 in one run and 0.2045 in the next."""
    params = {"eta": 0.3, "max_depth": 4, "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 0.9,
              "lambda": 1.0, "alpha": 0.01}
    for patience in range(20, 20 + REPORT_EVERY):  # one of these stops training on a reporting round
        tuning = TuningSpec(max_boost_rounds=1000, early_stopping_rounds=patience)
        last_round = fit_candidate("xgboost", params, data, tuning).iterations + patience  # 1-based
        if last_round % REPORT_EVERY == 0:
            break
    else:
        pytest.fail("no patience stopped training on a reporting round")
    alive = []
    for attempt in range(16):
        alive.append([object() for _ in range(7 * attempt)])  # the next callbacks land at other addresses
        steps: list[int] = []
        fit_candidate("xgboost", params, data, tuning, lambda step, _: steps.append(step))
        assert steps == list(range(1, last_round // REPORT_EVERY + 1)), attempt


def test_a_trial_on_few_rows_is_scored_by_cross_validation_over_train_and_valid(data):
    params = {"eta": 0.1, "max_depth": 3, "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 0.9,
              "lambda": 1.0, "alpha": 0.01}
    tuning = TuningSpec(max_boost_rounds=200, early_stopping_rounds=20, seed=5)  # 700 rows: under cv_max_rows
    steps: list[int] = []
    score, iterations = trial_score("xgboost", params, data, tuning, lambda step, _: steps.append(step))
    x, y = np.concatenate([data.x_train, data.x_valid]), np.concatenate([data.y_train, data.y_valid])
    folds = [fit_candidate("xgboost", params, TrainingData("binary", x[fit], y[fit], x[held], y[held]), tuning)
             for fit, held in fold_splits("binary", y, TRIAL_FOLDS, tuning.seed)]
    assert score == pytest.approx(np.mean([f.valid_score for f in folds]))
    assert iterations == round(np.mean([f.iterations for f in folds]))
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # the first fold's curve only, for pruning
    on_valid = fit_candidate("xgboost", params, data, tuning)
    assert score != pytest.approx(on_valid.valid_score)
    assert trial_score("xgboost", params, data, tuning.model_copy(update={"cv_max_rows": 699})) == (
        on_valid.valid_score, on_valid.iterations)


def test_a_trials_budget_smaller_than_the_portfolio_runs_its_first_points(data):
    portfolio = search_space("linear", "binary", TuningSpec()).portfolio
    first = optuna_search("linear", data, TuningSpec(), 1, progress=lambda line: None)
    assert first.trials == 1 and first.params == portfolio[0]
    two = optuna_search("linear", data, TuningSpec(), 2, progress=lambda line: None)
    assert two.trials == 2 and two.params in portfolio[:2]


def test_auto_is_katib_inside_a_cluster_and_optuna_elsewhere(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert resolve_backend("auto") == "optuna" and resolve_backend("katib") == "katib"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert resolve_backend("auto") == "katib" and resolve_backend("optuna") == "optuna"
    with pytest.raises(ValueError, match="tuning backend 'ray'"):
        resolve_backend("ray")


def test_a_family_left_out_of_the_use_case_is_skipped(toy_use_case, tmp_path: Path, capsys):
    use_case = toy_use_case.model_copy(update={"tuning": TuningSpec(families={"linear": 1})})
    assert tune_files(use_case, "forest", 0, "optuna", "unused", "unused", "unused", str(tmp_path / "r.json")) is None
    assert json.loads((tmp_path / "r.json").read_text())["skipped"] and "tune (forest): skipped" in capsys.readouterr().out


def linear_trial(name: str, c: str, score: str, state: str = "Succeeded") -> dict:
    return katib_trial(name, {"C": c, "l1_ratio": "0.0", "class_weight": "none"},
                       {"valid_roc_auc": score, "iterations": "1"}, state)


# The Experiment's Trials: the optimal one, two more that succeeded, one stopped early by medianstop.
TRIALS = (linear_trial("churn-linear-hpo-abc123-x1", "2", "0.8401"),
          linear_trial("churn-linear-hpo-abc123-x7", "0.05", "0.8512"),
          linear_trial("churn-linear-hpo-abc123-x2", "0.5", "0.8477"),
          linear_trial("churn-linear-hpo-abc123-x3", "9", "0.7", state="EarlyStopped"))


def test_the_katib_backend_submits_a_valid_experiment_and_returns_its_optimal_trial(churn, tmp_path: Path):
    api = experiment_server(OPTIMAL, trials=TRIALS)
    client = KatibClient(config_file=api.kubeconfig(tmp_path))
    plan = {"encodings": {"Contract": "one_hot"}, "transforms": {"tenure": "log1p"}, "generated": []}
    shown: list[str] = []
    result = katib_search(churn, "linear", 7, "registry.example/flowline:1", "flowline", feature_plan=plan,
                          client=client, prefix="tune (linear)", progress=shown.append)
    create = api.requests[0]
    assert (create["method"], create["path"]) == ("POST", EXPERIMENTS)
    experiment = create["body"]
    assert katib_errors(experiment) == []
    assert experiment["metadata"]["name"].startswith("churn-linear-hpo-") and experiment["spec"]["maxTrialCount"] == 7
    container = experiment["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/flowline:1"
    args = trial_args(container)
    assert args[:4] == ["--use-case", "churn", "--family", "linear"]
    assert json.loads(args[args.index("--feature-plan") + 1]) == plan
    assert args[args.index("--source") + 1].startswith("https://raw.githubusercontent.com/IBM/")
    assert [p["name"] for p in experiment["spec"]["parameters"]] == ["C", "l1_ratio", "class_weight"]
    *waits, listing, deleted = api.requests[1:]
    assert all(r["path"] == f"{EXPERIMENTS}/{experiment['metadata']['name']}" for r in waits)
    # Read, the Experiment is deleted with its Trials: a run's five no longer pile up in the namespace.
    assert (deleted["method"], deleted["path"]) == ("DELETE", f"{EXPERIMENTS}/{experiment['metadata']['name']}")
    assert listing["path"].startswith("/apis/kubeflow.org/v1beta1/namespaces/flowline/trials?labelSelector=")
    assert listing["path"].endswith(experiment["metadata"]["name"])
    # The runners-up are the other trials that succeeded, best first; the one stopped early is not among them.
    runner_up = {"l1_ratio": 0.0, "class_weight": "none"}
    assert result == SearchResult(family="linear", params={"C": 0.05, "l1_ratio": 1.0, "class_weight": "balanced"},
                                  valid_score=0.8512, iterations=1, trials=7, stopped_early=2, backend="katib",
                                  metric="valid_roc_auc",
                                  runners_up=[{"params": {"C": 0.5, **runner_up}, "iterations": 1, "valid_score": 0.8477},
                                              {"params": {"C": 2.0, **runner_up}, "iterations": 1, "valid_score": 0.8401}])
    assert "Katib Experiment flowline/churn-linear-hpo-" in shown[0] and "x7" in shown[-1]


@pytest.mark.parametrize(("optimal", "succeeded", "said"), [
    (None, True, "finished without a successful trial"),
    (OPTIMAL, False, "is Failed"),
])
def test_a_katib_experiment_that_gives_no_answer_fails_clearly(churn, tmp_path, optimal, succeeded, said):
    api = experiment_server(optimal, succeeded)
    with pytest.raises(KatibError, match=said):
        katib_search(churn, "linear", 3, "img:1", "flowline", client=KatibClient(config_file=api.kubeconfig(tmp_path)),
                     progress=lambda line: None)
    assert "DELETE" not in [r["method"] for r in api.requests]  # kept, to look into


def test_a_katib_experiment_that_outlives_the_steps_timeout_is_deleted_not_left_running(churn, tmp_path):
    api = experiment_server(OPTIMAL, running=True)
    quick = churn.model_copy(update={"tuning": churn.tuning.model_copy(update={"timeout_seconds": 1})})
    with pytest.raises(KatibError, match=r"did not finish within tuning.timeout_seconds \(1 s\), and was deleted"):
        katib_search(quick, "linear", 3, "img:1", "flowline", client=KatibClient(config_file=api.kubeconfig(tmp_path)),
                     progress=lambda line: None)
    created = api.requests[0]["body"]["metadata"]["name"]
    assert (api.requests[-1]["method"], api.requests[-1]["path"]) == ("DELETE", f"{EXPERIMENTS}/{created}")


def test_one_slow_answer_of_the_api_is_waited_out_not_taken_for_the_deadline(churn, tmp_path):
    """The Katib SDK raises TimeoutError when one read of the Experiment takes over its 120 s, as it does at its
    own deadline: taken for the step's deadline, a healthy Experiment was deleted."""
    class SlowOnce(KatibClient):
        slow = True

        def wait_for_experiment_condition(self, *args, **kwargs):
            if self.slow:
                self.slow = False
                raise TimeoutError("Timeout to get Katib Experiment: flowline/churn-linear-hpo")
            return super().wait_for_experiment_condition(*args, **kwargs)

    api = experiment_server(OPTIMAL, trials=TRIALS)
    result = katib_search(churn, "linear", 7, "img:1", "flowline", client=SlowOnce(config_file=api.kubeconfig(tmp_path)),
                          progress=lambda line: None)
    assert result.params["C"] == 0.05
    assert [r["method"] for r in api.requests].count("DELETE") == 1  # once, after its results were read


def test_tune_files_with_optuna_saves_the_best_for_train(toy_use_case, splits, tmp_path: Path, capsys):
    result = tune_files(toy_use_case, "linear", 3, "optuna", splits["train"], splits["valid"], splits["fs.json"],
                        str(tmp_path / "best.json"))
    assert SearchResult.load(tmp_path / "best.json") == result and result.trials == 3
    assert "tune (linear): best valid_roc_auc" in capsys.readouterr().out


def test_class_weighting_adds_the_positive_weight_to_the_tree_families_only():
    weighted = TuningSpec(class_weighting=True)
    for family in FAMILIES:
        names = [p.name for p in search_space(family, "binary", weighted).parameters]
        assert ("scale_pos_weight" in names) == (family in ("xgboost", "forest", "lightgbm", "catboost"))
        assert "scale_pos_weight" not in [p.name for p in search_space(family, "binary", TuningSpec()).parameters]
    assert "class_weight" in [p.name for p in search_space("linear", "binary", weighted).parameters]


def test_tweedie_regression_searches_the_glms_penalty_per_row():
    tweedie = search_space("linear", "regression", TuningSpec(objective="tweedie"))
    ridge = search_space("linear", "regression", TuningSpec())
    # sklearn's GLM penalty multiplies a per-row mean deviance: useful values sit far below Ridge's.
    assert [p.name for p in tweedie.parameters] == ["alpha"] and tweedie.parameters[0].high <= 1.0
    assert ridge.parameters[0].high >= 100


@pytest.mark.parametrize(("status", "said"), [
    (None, "cannot reach the Kubernetes API at {url}: connection refused"),
    (401, "the Kubernetes API at {url} refused the request (401 Unauthorized): check the kubeconfig's credentials"),
])
def test_a_cluster_katib_cannot_reach_or_that_refuses_is_one_line(churn, tmp_path, status, said):
    from flowline.cluster import ClusterError

    url, config, _api = unreachable_or_refusing(status, tmp_path)
    with pytest.raises(ClusterError) as raised:
        katib_search(churn, "linear", 3, "img:1", "flowline", client=KatibClient(config_file=config),
                     progress=lambda line: None)
    assert str(raised.value).startswith(said.format(url=url)) and "\n" not in str(raised.value)


def test_the_lightgbm_space_round_trips_through_katibs_strings(data):
    space = search_space("lightgbm", "binary", TuningSpec())
    assert [p.name for p in space.parameters] == ["learning_rate", "num_leaves", "min_child_samples",
                                                  "feature_fraction", "bagging_fraction", "lambda_l1", "lambda_l2"]
    # Katib assigns strings within each parameter's feasible space: both ends parse back to typed values.
    for end, bound in (("min", "low"), ("max", "high")):
        assignments = {spec.name: getattr(spec.feasible_space, end) for spec in space.katib_parameters()}
        parsed = space.parse(assignments)
        assert parsed == {p.name: getattr(p, bound) for p in space.parameters}
        assert [type(value) for value in parsed.values()] == [
            float if isinstance(p, FloatParameter) else int for p in space.parameters]
    with pytest.raises(SearchSpaceError, match=r"lightgbm: num_leaves=256 is outside \[4, 128\]"):
        space.parse({**assignments, "num_leaves": "256"})
    # Optuna draws from the same space, seeded: one seed, one search.
    tuning = TuningSpec(max_boost_rounds=200, early_stopping_rounds=20)
    first = optuna_search("lightgbm", data, tuning, 5, progress=lambda line: None)
    assert first == optuna_search("lightgbm", data, tuning, 5, progress=lambda line: None)
    assert space.parse(first.params) == first.params and 1 <= first.iterations <= 200 and first.valid_score > 0.75


def test_the_catboost_space_round_trips_through_katibs_strings_and_searches_seeded(data):
    space = search_space("catboost", "binary", TuningSpec(class_weighting=True))
    assert [p.name for p in space.parameters] == ["learning_rate", "depth", "l2_leaf_reg", "random_strength",
                                                  "bagging_temperature", "scale_pos_weight"]
    for end, bound in (("min", "low"), ("max", "high")):
        assignments = {spec.name: getattr(spec.feasible_space, end) for spec in space.katib_parameters()}
        assert space.parse(assignments) == {p.name: getattr(p, bound) for p in space.parameters}
    with pytest.raises(SearchSpaceError, match=r"catboost: depth=12 is outside \[3, 10\]"):
        space.parse({**assignments, "depth": "12"})
    tuning = TuningSpec(max_boost_rounds=200, early_stopping_rounds=20)
    first = optuna_search("catboost", data, tuning, 4, progress=lambda line: None)
    assert first == optuna_search("catboost", data, tuning, 4, progress=lambda line: None)
    assert space.parse({**first.params, "scale_pos_weight": 1.0}) == {**first.params, "scale_pos_weight": 1.0}
    assert 1 <= first.iterations <= 200 and first.valid_score > 0.75


def test_the_katib_backend_without_a_cluster_says_so_in_one_line(churn, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KatibError, match="the Katib backend finds no cluster to talk to .*tuning.backend optuna"):
        katib_search(churn, "linear", 3, "img:1", "flowline", progress=lambda line: None)


def test_a_search_without_a_finite_best_score_is_refused_naming_the_family():
    """A fold with one class only scores NaN, and its -inf best reached KFP's metrics, whose protobuf could not
    serialise it: a traceback naming neither the family nor why (the data audit)."""
    from types import SimpleNamespace

    from flowline.tuning import record_search

    result = SearchResult(family="mlp", params={}, valid_score=float("-inf"), iterations=1, trials=1,
                          stopped_early=0, backend="optuna", metric="roc_auc")
    best = SimpleNamespace(metadata={})
    with pytest.raises(ValueError, match="mlp: no trial scored a finite roc_auc"):
        record_search(result, "binary", best, None)
    assert best.metadata == {}
