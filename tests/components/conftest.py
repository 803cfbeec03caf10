"""Fixtures the search tests share: encoded training data, and a toy use case's splits with its FeatureSet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowline.features.feature_set import FeatureSet
from flowline.models.families import TrainingData


@pytest.fixture
def splits(toy_use_case, tmp_path: Path) -> dict[str, str]:
    """toy_use_case's train (300 rows) and valid (100) Parquet files and its FeatureSet, by name: train, valid, fs.json."""
    rng = np.random.default_rng(2)
    for name, n in (("train", 300), ("valid", 100)):
        age = rng.integers(18, 80, n)
        pd.DataFrame({"id": [f"{name}{i}" for i in range(n)], "age": age, "income": rng.normal(3000, 500, n),
                      "plan": rng.choice(["basic", "pro"], n),
                      "label": np.where(age + rng.normal(0, 10, n) > 50, "yes", "no")}).to_parquet(tmp_path / name)
    FeatureSet.fit(pd.read_parquet(tmp_path / "train"), toy_use_case).save(tmp_path / "fs.json")
    return {name: str(tmp_path / name) for name in ("train", "valid", "fs.json")}


@pytest.fixture(scope="module")
def data() -> TrainingData:
    """700 encoded binary rows (500 train, 200 valid) whose label depends on an interaction: searches can improve."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(700, 4))
    y = (rng.random(700) < 1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1] + x[:, 2] * x[:, 3])))).astype(float)
    return TrainingData("binary", x[:500], y[:500], x[500:], y[500:])
