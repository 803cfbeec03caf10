import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowline.components.drift.detector import (
    CALIBRATION_FILE,
    DETECTOR_DIR,
    MAX_FALSE_ALARM_RATE,
    DriftEncoder,
    fit_drift_files,
    load_calibration,
    sample_windows,
)
from flowline.components.features.feature_set import FeatureSet


def rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"r{seed}-{i}" for i in range(n)],
        "age": rng.integers(18, 80, n).astype(float),
        "income": rng.lognormal(8, 0.4, n),
        "plan": rng.choice(["basic", "pro"], n, p=[0.7, 0.3]),
        "label": rng.choice(["no", "yes"], n),
    })


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    from flowline.pipelines.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "toy", "task": "binary", "data": {"path": "x.csv"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]}, "id_columns": ["id"],
        "columns": {"id": {"type": "string"}, "age": {"type": "integer"}, "income": {"type": "number", "nullable": True},
                    "plan": {"type": "category"}},
        "costs": {"false_negative": 5, "false_positive": 1},
    })
    folder = tmp_path_factory.mktemp("drift")
    rows(3000, 1).to_parquet(folder / "train")
    rows(1800, 2).to_parquet(folder / "valid")
    FeatureSet.fit(pd.read_parquet(folder / "train"), use_case).save(folder / "fs.json")
    fit_drift_files(use_case, str(folder / "train"), str(folder / "valid"), str(folder / "fs.json"), str(folder / "out"))
    return folder, folder / "out"


def test_the_encoder_treats_frames_and_records_alike(fitted):
    folder, _ = fitted
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    frame = rows(50, 3).assign(plan=["gold"] + ["pro"] * 49)
    frame.loc[1, "income"] = None
    batch = encoder.encode_frame(frame)
    singles = np.stack([encoder.encode_record(r) for r in frame.to_dict("records")])
    assert np.array_equal(batch, singles)
    plan = encoder.columns.index("plan")
    assert batch[0, plan] == len(encoder.codes["plan"])  # an unknown category gets its own code
    assert batch[1, encoder.columns.index("income")] == np.float32(encoder.fills["income"])


def test_calibration_bounds_false_alarms_and_is_saved_without_pickle(fitted):
    _, out = fitted
    calibration = load_calibration(out)
    assert calibration.false_alarm_rate <= MAX_FALSE_ALARM_RATE and calibration.threshold <= 0.01
    assert calibration.window_size in calibration.power_by_window
    assert json.loads((out / CALIBRATION_FILE).read_text())["window_size"] == calibration.window_size
    saved = {p.name for p in (out / DETECTOR_DIR).iterdir()}
    assert saved == {"config.toml", "x_ref.npy"}


def test_the_saved_detector_flags_a_shift_and_not_fresh_reference_data(fitted):
    from alibi_detect.saving import load_detector

    folder, out = fitted
    calibration = load_calibration(out)
    detector = load_detector(str(out / DETECTOR_DIR))
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    fresh = encoder.encode_frame(rows(2000, 4))
    windows = sample_windows(fresh, 40, calibration.window_size, np.random.default_rng(0))
    alarms = [detector.predict(w)["data"]["is_drift"] for w in windows]
    assert np.mean(alarms) <= MAX_FALSE_ALARM_RATE
    shifted = windows.copy()
    shifted[..., encoder.columns.index("income")] *= 1.3
    assert np.mean([detector.predict(w)["data"]["is_drift"] for w in shifted]) >= 0.9
