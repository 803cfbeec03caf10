"""The NumPy MLP the NAS step searches, and the architecture search run locally."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from flowline.models.mlp import MLPNetwork, hidden_layers, train_mlp
from flowline.models.families import TrainingData
from flowline.search import optuna_search
from flowline.search_space import search_space
from flowline.use_case import TuningSpec


@pytest.fixture(scope="module")
def xor() -> tuple[np.ndarray, np.ndarray]:
    """A label no linear model can learn: the sign of x0 * x1."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 3))
    return x, (x[:, 0] * x[:, 1] > 0).astype(float)


def auc_on(x_valid, y_valid):
    return lambda margins: roc_auc_score(y_valid, margins)


def test_hidden_layers_follow_depth():
    params = {"depth": 2, "width_1": 64, "width_2": 16, "width_3": 128}
    assert hidden_layers(params) == (64, 16)
    assert hidden_layers({**params, "depth": 3}) == (64, 16, 128)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
def test_a_hidden_layer_learns_what_a_linear_model_cannot(xor, activation):
    x, y = xor
    network, epoch, score = train_mlp(x[:1000], y[:1000], (32,), activation, 0.0, 0.01, True, 60, 1,
                                      x_valid=x[1000:], score=auc_on(x[1000:], y[1000:]))
    assert score > 0.95 and 1 <= epoch <= 60
    assert roc_auc_score(y[1000:], network.margin(x[1000:])) == pytest.approx(score)


def test_training_is_seeded_and_keeps_the_best_epoch(xor):
    x, y = xor
    runs = [train_mlp(x[:1000], y[:1000], (16, 8), "relu", 0.2, 0.005, True, 30, 7, x_valid=x[1000:],
                      score=auc_on(x[1000:], y[1000:])) for _ in range(2)]
    assert runs[0][1:] == runs[1][1:] and np.array_equal(runs[0][0].margin(x), runs[1][0].margin(x))
    seen = []
    network, best, score = train_mlp(x[:1000], y[:1000], (16,), "relu", 0.0, 0.005, True, 25, 7, x_valid=x[1000:],
                                     score=auc_on(x[1000:], y[1000:]), report=lambda e, s: seen.append(s))
    assert score == max(seen) and seen[best - 1] == score


def test_dropout_changes_training_but_not_the_served_forward_pass(xor):
    x, y = xor
    plain, _, _ = train_mlp(x[:1000], y[:1000], (16,), "relu", 0.0, 0.01, True, 10, 3, x_valid=x[1000:],
                            score=auc_on(x[1000:], y[1000:]))
    dropped, _, _ = train_mlp(x[:1000], y[:1000], (16,), "relu", 0.5, 0.01, True, 10, 3, x_valid=x[1000:],
                              score=auc_on(x[1000:], y[1000:]))
    assert not np.allclose(plain.margin(x), dropped.margin(x))
    assert np.array_equal(dropped.margin(x[:5]), dropped.margin(x[:5]))  # no randomness when serving


def test_without_validation_it_trains_exactly_the_epochs_asked(xor):
    x, y = xor
    network, epochs, score = train_mlp(x, y, (8,), "tanh", 0.0, 0.01, True, 3, 1)
    assert epochs == 3 and np.isnan(score)


def test_regression_targets_are_standardised_and_restored():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(800, 2))
    y = 1000 + 300 * x[:, 0] - 200 * np.tanh(x[:, 1])
    network, _, score = train_mlp(x[:600], y[:600], (32,), "tanh", 0.0, 0.01, False, 80, 0, x_valid=x[600:],
                                  score=lambda m: -np.sqrt(np.mean((y[600:] - m) ** 2)))
    assert -score < 40 and abs(network.margin(x[600:]).mean() - y[600:].mean()) < 40


def test_a_diverging_network_is_never_chosen(xor):
    x, y = xor
    network, epoch, score = train_mlp(x[:1000], y[:1000] * 1e6, (8,), "relu", 0.0, 10.0, False, 5, 0,
                                      x_valid=x[1000:], score=lambda m: -np.sqrt(np.mean(m ** 2)))
    assert np.isfinite(network.margin(x[:10])).all() and not np.isnan(score)


def test_the_network_round_trips_through_json(xor):
    x, y = xor
    network, _, _ = train_mlp(x[:500], y[:500], (8, 4), "elu", 0.1, 0.01, True, 5, 0, x_valid=x[500:],
                              score=auc_on(x[500:], y[500:]))
    import json

    again = MLPNetwork.from_dict(json.loads(json.dumps(network.to_dict())))
    assert np.array_equal(again.margin(x), network.margin(x))


def test_nas_runs_locally_on_a_small_budget(xor):
    x, y = xor
    data = TrainingData("binary", x[:1000], y[:1000], x[1000:], y[1000:])
    shown: list[str] = []
    result = optuna_search("mlp", data, TuningSpec(max_epochs=15), 4, progress=shown.append, prefix="nas (mlp)")
    assert result.trials == 4 and 1 <= result.iterations <= 15 and result.valid_score > 0.8
    assert search_space("mlp", "binary", TuningSpec()).parse(result.params) == result.params
    assert shown[-1].startswith("nas (mlp): trial 4/4")
