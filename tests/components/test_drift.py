import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowline.drift import (
    CALIBRATION_FILE,
    DETECTOR_CONFIG,
    DETECTOR_DIR,
    MAX_FALSE_ALARM_RATE,
    REFERENCE_FILE,
    DetectorError,
    DriftEncoder,
    column_detectors,
    corrected_min_p,
    fit_drift_files,
    load_calibration,
    load_detector,
    load_reference,
    sample_windows,
    tabular_drift,
)
from flowline.features.feature_set import FeatureSet


def rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"r{seed}-{i}" for i in range(n)],
        "age": rng.integers(18, 80, n).astype(float),
        "income": rng.lognormal(8, 0.4, n),
        "plan": rng.choice(["basic", "pro"], n, p=[0.7, 0.3]),
        "label": rng.choice(["no", "yes"], n),
        "senior": rng.choice([0, 1], n, p=[0.84, 0.16]),
    })


def fit_toy(folder: Path, train_rows: int, valid_rows: int) -> Path:
    """A toy use case's drift monitor fitted on `train_rows` and calibrated on `valid_rows`; its folder."""
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "toy", "task": "binary", "data": {"path": "x.csv"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]}, "id_columns": ["id"],
        "columns": {"id": {"type": "string"}, "age": {"type": "integer"}, "income": {"type": "number", "nullable": True},
                    "plan": {"type": "category"}, "senior": {"type": "integer", "min": 0, "max": 1}},
        "costs": {"false_negative": 5, "false_positive": 1},
    })
    rows(train_rows, 1).to_parquet(folder / "train")
    rows(valid_rows, 2).to_parquet(folder / "valid")
    FeatureSet.fit(pd.read_parquet(folder / "train"), use_case).save(folder / "fs.json")
    fit_drift_files(use_case, str(folder / "train"), str(folder / "valid"), str(folder / "fs.json"), str(folder / "out"))
    return folder / "out"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("drift")
    return folder, fit_toy(folder, 3000, 1800)


@pytest.mark.parametrize("valid_rows, window", [(40, 40), (150, 100)])
def test_small_data_gets_the_windows_its_held_out_rows_can_fill(tmp_path, valid_rows, window):
    """A few hundred rows failed the drift step after the whole search: the first window tried was 100 rows."""
    calibration = load_calibration(fit_toy(tmp_path, 300, valid_rows))
    assert calibration.window_size == window and set(calibration.power_by_window) == {window}
    assert calibration.false_alarm_rate <= MAX_FALSE_ALARM_RATE


def test_the_encoder_treats_frames_and_records_alike(fitted):
    folder, _ = fitted
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    frame = rows(50, 3).assign(plan=["gold"] + ["pro"] * 49)
    frame.loc[1, "income"] = None
    batch = encoder.encode_frame(frame)
    singles = np.stack([encoder.encode_records([r])[0] for r in frame.to_dict("records")])
    assert np.array_equal(batch, singles)
    assert np.array_equal(batch, encoder.encode_records(frame.to_dict("records")))
    plan = encoder.columns.index("plan")
    assert batch[0, plan] == len(encoder.codes["plan"])  # an unknown category gets its own code
    assert batch[1, encoder.columns.index("income")] == np.float32(encoder.fills["income"])


def test_records_as_json_carries_them_encode_as_their_frame(fitted):
    """What a request may carry within the contract: numbers as text, blanks, padded categories."""
    folder, _ = fitted
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    records = [{"age": 30, "income": "1200.5", "plan": " pro ", "senior": 0},
               {"age": "41", "income": None, "plan": "basic", "senior": "1"},
               {"age": 52.0, "income": float("nan"), "plan": None, "senior": 1.0},
               {"age": 1e30, "income": 3, "plan": "gold", "senior": 0}]
    encoded = encoder.encode_records(records)
    assert np.array_equal(encoded, encoder.encode_frame(pd.DataFrame(records, dtype=object)))
    income, plan = encoder.columns.index("income"), encoder.columns.index("plan")
    assert encoded[0, plan] == encoder.codes["plan"]["pro"] and encoded[2, plan] == len(encoder.codes["plan"])
    assert encoded[1, income] == encoded[2, income] == np.float32(encoder.fills["income"])


def test_calibration_bounds_false_alarms_and_is_saved_without_pickle(fitted):
    _, out = fitted
    calibration = load_calibration(out)
    assert calibration.false_alarm_rate <= MAX_FALSE_ALARM_RATE and calibration.threshold <= 0.01
    assert calibration.window_size in calibration.power_by_window
    assert json.loads((out / CALIBRATION_FILE).read_text())["window_size"] == calibration.window_size
    saved = {p.name for p in (out / DETECTOR_DIR).iterdir()}
    assert saved == {DETECTOR_CONFIG, REFERENCE_FILE}
    assert np.load(out / DETECTOR_DIR / REFERENCE_FILE, allow_pickle=False).dtype == np.float32


def test_the_saved_detector_flags_a_shift_and_not_fresh_reference_data(fitted):
    folder, out = fitted
    calibration = load_calibration(out)
    detector = load_detector(out / DETECTOR_DIR)
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    fresh = encoder.encode_frame(rows(2000, 4))
    windows = sample_windows(fresh, 40, calibration.window_size, np.random.default_rng(0))
    alarms = [detector.predict(w)["data"]["is_drift"] for w in windows]
    assert np.mean(alarms) <= MAX_FALSE_ALARM_RATE
    shifted = windows.copy()
    shifted[..., encoder.columns.index("income")] *= 1.3
    assert np.mean([detector.predict(w)["data"]["is_drift"] for w in shifted]) >= 0.9


def test_a_few_valued_number_is_tested_as_categories_and_its_share_moving_is_caught(fitted):
    """A 0/1 column (churn's SeniorCitizen) was KS-tested as a number: far too conservative on two values, it caught a
    share moving from 16 % to 30 % of the rows in a few windows, and the calibration's shift (times 1.3) made values
    the column never takes, so it reported full power for it. It is tested, and shifted, as categories now."""
    folder, out = fitted
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    reference, categorical, p_val = load_reference(out / DETECTOR_DIR)
    assert [encoder.columns[i] for i in categorical] == ["senior", "plan"]  # age (62 values) and income stay numbers
    calibration = load_calibration(out)
    assert set(calibration.power_by_feature) == set(encoder.columns)
    assert calibration.power == float(np.median(list(calibration.power_by_feature.values())))
    rng = np.random.default_rng(0)
    windows = sample_windows(encoder.encode_frame(rows(4000, 4)), 100, calibration.window_size, rng)
    senior = encoder.columns.index("senior")
    windows[..., senior] = (rng.random(windows[..., senior].shape) < 0.30).astype(np.float32)
    as_categories = np.mean([load_detector(out / DETECTOR_DIR).predict(w)["data"]["is_drift"] for w in windows])
    as_numbers = np.mean([tabular_drift(reference, encoder.categorical_columns, p_val).predict(w)["data"]["is_drift"]
                          for w in windows])
    assert as_categories >= 0.4 and as_numbers <= 0.25, (as_categories, as_numbers)


def test_one_column_tests_give_the_whole_detectors_corrected_minimum_for_a_one_column_shift(fitted):
    """calibrate's power runs rest on this: shifting one column changes that column's p-value only."""
    folder, out = fitted
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    reference, categorical, _ = load_reference(out / DETECTOR_DIR)
    whole = load_detector(out / DETECTOR_DIR)
    columns = column_detectors(reference, categorical)
    fresh = rows(1200, 6).assign(plan=lambda f: f["plan"].where(f.index % 9 > 0, "gold"))  # a category unseen
    rng = np.random.default_rng(1)
    for column, column_detector in enumerate(columns):
        for window in sample_windows(encoder.encode_frame(fresh), 5, 200, rng):
            shifted = window.copy()
            shifted[:, column] = shifted[:, column] * 1.3 if column not in categorical \
                else np.where(rng.random(len(window)) < 0.3, 0, shifted[:, column])
            p_values = whole.score(window)[0]
            p_values[column] = column_detector.score(shifted[:, [column]])[0][0]
            assert float(p_values.min() * len(p_values)) == corrected_min_p(whole, shifted)


class Payload:
    """Creates `marker` when unpickled: what a hostile reference file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def saved_copy(out: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(out / DETECTOR_DIR, tmp_path / "detector"))


def test_the_rebuilt_detector_scores_exactly_as_a_freshly_fitted_one(fitted):
    from alibi_detect.cd import TabularDrift

    folder, out = fitted
    encoder = DriftEncoder(FeatureSet.load(folder / "fs.json"))
    reference = np.load(out / DETECTOR_DIR / REFERENCE_FILE, allow_pickle=False)
    config = json.loads((out / DETECTOR_DIR / DETECTOR_CONFIG).read_text())
    fresh = TabularDrift(reference, p_val=config["p_val"], correction="bonferroni",
                         categories_per_feature={i: None for i in config["categorical_features"]})
    window = encoder.encode_frame(rows(400, 5))
    rebuilt = load_detector(out / DETECTOR_DIR).predict(window, return_p_val=True)["data"]
    expected = fresh.predict(window, return_p_val=True)["data"]
    assert np.array_equal(rebuilt["p_val"], expected["p_val"]) and rebuilt["threshold"] == expected["threshold"]
    assert config["p_val"] == load_calibration(out).threshold  # it decides with the calibrated threshold


@pytest.mark.parametrize("x_ref", ["/etc/passwd", "../outside.npy", "sub/x_ref.npy", ".."])
def test_a_reference_outside_the_detector_folder_is_refused_by_field(fitted, tmp_path, x_ref):
    copy = saved_copy(fitted[1], tmp_path)
    config = json.loads((copy / DETECTOR_CONFIG).read_text())
    (copy / DETECTOR_CONFIG).write_text(json.dumps({**config, "x_ref": x_ref}))
    with pytest.raises(DetectorError, match=f"x_ref must name a file in {copy}, not '{x_ref}'"):
        load_detector(copy)


def test_a_pickled_reference_is_refused_and_never_unpickled(fitted, tmp_path):
    copy, marker = saved_copy(fitted[1], tmp_path), tmp_path / "code-ran"
    np.save(copy / REFERENCE_FILE, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(DetectorError, match="x_ref.npy is not a numeric .npy array .pickled data is refused"):
        load_detector(copy)
    assert not marker.exists()
    with pytest.raises(ValueError):  # the same file, loaded the unsafe way, would have run the payload
        np.load(copy / REFERENCE_FILE)
    np.load(copy / REFERENCE_FILE, allow_pickle=True)
    assert marker.exists()


def test_an_npz_archive_in_place_of_the_reference_is_refused(fitted, tmp_path):
    copy = saved_copy(fitted[1], tmp_path)
    reference = np.load(copy / REFERENCE_FILE, allow_pickle=False)
    with open(copy / REFERENCE_FILE, "wb") as file:  # an .npz archive under the .npy name
        np.savez(file, x=reference)
    with pytest.raises(DetectorError, match="is an .npz archive, expected one .npy array"):
        load_detector(copy)


def test_alibi_detects_own_save_format_is_not_read(fitted, tmp_path):
    """alibi-detect's config.toml can name a dill file to unpickle: a detector folder holding one is refused."""
    copy = saved_copy(fitted[1], tmp_path)
    (copy / "config.toml").write_text('name = "TabularDrift"\nx_ref = "/tmp/payload.dill"\n')
    with pytest.raises(DetectorError, match="config.toml is not part of a saved detector"):
        load_detector(copy)


def test_a_malformed_config_is_refused_naming_the_field(fitted, tmp_path):
    copy = saved_copy(fitted[1], tmp_path)
    config = json.loads((copy / DETECTOR_CONFIG).read_text())
    (copy / DETECTOR_CONFIG).write_text(json.dumps({**config, "categorical_features": [99]}))
    with pytest.raises(DetectorError, match="categorical_features must list column indices below 4"):
        load_detector(copy)
    (copy / DETECTOR_CONFIG).write_text(json.dumps({**config, "p_val": "0.01; import os"}))
    with pytest.raises(DetectorError, match="p_val must be a number in"):
        load_detector(copy)
