"""DensePredictor: XGBoost's C API called directly gives exactly what Booster.inplace_predict gives."""

import numpy as np
import pytest
import xgboost as xgb

from flowline.models.booster_predict import DensePredictor


def _booster(objective: str, categorical: bool = False) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 6))
    x[:, 5] = rng.integers(0, 4, size=400)
    y = (x[:, 0] + x[:, 5] > 1).astype(float) if objective.startswith("binary") else np.exp(x[:, 0]) + x[:, 5]
    x[rng.random(x.shape) < 0.1] = np.nan  # missing values take the trees' default branches
    matrix = xgb.DMatrix(x, label=y, feature_types=["q"] * 5 + ["c"] if categorical else None,
                         enable_categorical=categorical)
    return xgb.train({"objective": objective, "max_depth": 4, "seed": 0}, matrix, num_boost_round=25), x


@pytest.mark.parametrize("objective, margin, kind", [
    ("binary:logistic", True, "margin"), ("reg:tweedie", False, "value"), ("reg:squarederror", False, "value")])
@pytest.mark.parametrize("categorical", [False, True])
def test_answers_equal_inplace_predict_for_one_row_and_many(objective, margin, kind, categorical):
    booster, x = _booster(objective, categorical)
    predict = DensePredictor(booster, margin=margin)
    for rows in (x[:1], x[:37], x, x.astype(np.float32), np.asfortranarray(x[:50]), x[::3]):
        expected = booster.inplace_predict(rows, predict_type=kind).astype(np.float64)
        got = predict(rows)
        assert got.dtype == np.float64 and got.shape == (len(rows),)
        np.testing.assert_array_equal(got, expected)
    assert predict(x[:0]).shape == (0,)


def test_margins_are_not_probabilities():
    booster, x = _booster("binary:logistic")
    margins = DensePredictor(booster, margin=True)(x)
    probabilities = DensePredictor(booster, margin=False)(x)
    assert margins.min() < 0 < margins.max()
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-margins)), rtol=1e-6)


def test_a_matrix_of_the_wrong_width_is_refused_by_shape():
    booster, x = _booster("binary:logistic")
    with pytest.raises(ValueError, match=r"expected \(rows, 6\) features, got shape \(4, 5\)"):
        DensePredictor(booster, margin=True)(x[:4, :5])


def test_an_error_inside_xgboost_is_raised_with_its_message():
    booster, x = _booster("binary:logistic")
    predict = DensePredictor(booster, margin=True)
    predict.config = b'{"type": 99}'  # a predict type XGBoost does not know
    with pytest.raises(xgb.core.XGBoostError):
        predict(x[:2])
