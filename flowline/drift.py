"""Drift detection on raw features: an alibi-detect TabularDrift fitted on the training split.

KS tests for numeric columns and chi-squared tests for categorical ones, and for numeric columns of a few
values (a 0/1 flag, a count of children: `tested_as_categories`), Bonferroni-corrected across features.
Raw columns are encoded for the detector from the package's FeatureSet (numeric: the value, blanks
filled; categorical: the category's index, one code for unknown or missing), so the pipeline and the
monitor encode identically.

Calibration uses windows drawn from the held-out validation split (never seen by the
detector): the threshold is a Bonferroni-corrected 0.01, lowered further if more than
5 % of unshifted held-out windows would raise an alarm (so false alarms stay near 1 %
and never above 5 % there), and the window size is the smallest candidate at which the median feature's
shift is caught in at least 90 % of windows. The shift applied to one feature at a
time: a numeric feature 30 % higher, or a categorical feature's (or a few-valued numeric one's) most
common value losing 30 % of its rows to the others. Each feature's power at the chosen window is saved
too (`power_by_feature`): the median hides the features a window rarely catches.

The detector is stored as data only: the reference rows as .npy (read with
allow_pickle=False) and a small JSON config; `load_detector` rebuilds the alibi-detect
detector from them, so no file of a package can execute code when the monitor loads it
(alibi-detect's own save format can name a dill file to unpickle).

alibi-detect 0.12+ is under the Business Source License 1.1: see the README. Only this
module imports it; the monitor uses the detector through `predict` and `score`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from flowline.contract import numbers_from_text
from flowline.features.feature_set import FeatureSet
from flowline.features.plan import MAX_CATEGORIES

DETECTOR_DIR = "detector"
DETECTOR_CONFIG = "config.json"
REFERENCE_FILE = "x_ref.npy"
REFERENCE_FIELD = "x_ref"  # the config's name of the reference file, inside the detector folder
DETECTOR_FORMAT = "flowline.drift/v1"
CALIBRATION_FILE = "calibration.json"
WINDOW_CANDIDATES = (100, 200, 400, 800)
DESIGN_ALPHA = 0.01
MAX_FALSE_ALARM_RATE = 0.05
TARGET_POWER = 0.9
CALIBRATION_SHIFT = 0.3
NULL_WINDOWS = 100
# Per feature and window size: 10 moved each power by steps of 0.1 (±0.3 at 0.7); 40 cost spambase 8 s more.
SHIFTED_WINDOWS = 20
MAX_LEVELS_AS_CATEGORIES = 10  # a numeric column of at most this many values in the reference is tested as categories
MAX_REFERENCE_ROWS = 5000


class DriftEncoder:
    """Raw records or frames to the detector's numeric matrix, from a FeatureSet's fitted state."""

    def __init__(self, feature_set: FeatureSet) -> None:
        """The contract's numeric and categorical feature columns (not the time or entity column:
        time always moves on). Categories beyond the MAX_CATEGORIES most frequent share one code."""
        self.columns = [i.column for i in feature_set.numeric] + [i.column for i in feature_set.categorical]
        self.fills = {i.column: i.fill for i in feature_set.numeric}
        self.codes = {i.column: {c: k for k, c in enumerate(i.categories[:MAX_CATEGORIES])}
                      for i in feature_set.categorical}

    @property
    def categorical_columns(self) -> list[int]:
        """Indices of the categorical columns: the detector takes their codes from the reference and adds
        those a window brings (an unknown category), so empty codes never enter the chi-squared table."""
        return [i for i, c in enumerate(self.columns) if c in self.codes]

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.empty((len(frame), len(self.columns)), dtype=np.float32)
        for i, column in enumerate(self.columns):
            if column in self.codes:
                known = self.codes[column]
                text = frame[column].astype(str).str.strip().where(frame[column].notna(), None)
                out[:, i] = text.map(known).fillna(len(known)).to_numpy(dtype=np.float32)
            else:
                out[:, i] = numbers_from_text(frame[column]).fillna(self.fills[column]).to_numpy()
        return out

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Records (checked request rows) to the matrix `encode_frame` gives for them, a column at a time: the
        monitor encodes a whole window in one call rather than a numpy row per event."""
        out = np.empty((len(records), len(self.columns)), dtype=np.float32)
        for i, column in enumerate(self.columns):
            values = [record.get(column) for record in records]
            if column in self.codes:
                known = self.codes[column]
                unknown = len(known)
                out[:, i] = [unknown if value is None else known.get(str(value).strip(), unknown) for value in values]
            else:
                fill = self.fills[column]
                out[:, i] = [_number_or(value, fill) for value in values]
        return out


def _number_or(value: Any, fill: float) -> float:
    """A record's numeric value as a float, or `fill` where it is missing (None, NaN or not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return fill
    return fill if math.isnan(number) else number


@dataclass(frozen=True)
class Calibration:
    window_size: int
    threshold: float  # Bonferroni-corrected: a window drifts when min p-value * features < threshold
    false_alarm_rate: float  # on held-out windows at this size and threshold
    power: float  # median over features of the detection rate under that feature's shift
    features: list[str]
    power_by_window: dict[int, float]
    power_by_feature: dict[str, float] = field(default_factory=dict)  # at window_size (empty before it was saved)

    @property
    def weakest_feature(self) -> str:
        """The feature whose shift the chosen window catches least often."""
        return min(self.power_by_feature, key=self.power_by_feature.get)


def corrected_min_p(detector, window: np.ndarray) -> float:
    return float(bonferroni_min(detector.score(window)[0]))


def bonferroni_min(p_values: np.ndarray) -> np.ndarray:
    """The smallest p-value of each row of per-column p-values (last axis), times the number of columns."""
    return p_values.min(axis=-1) * p_values.shape[-1]


def tested_as_categories(reference: np.ndarray, encoder: DriftEncoder) -> list[int]:
    """The columns the detector tests with chi-squared: the categorical ones, and the numeric ones with at most
    MAX_LEVELS_AS_CATEGORIES values in the reference. KS on so few values is far too conservative: churn's
    SeniorCitizen (0 or 1) moving from 16 % to 22 % of the rows was caught in 1 % of 400-row windows, where
    chi-squared caught 32 % (the drift audit); and a numeric shift of 30 % made values the column never takes."""
    categorical = set(encoder.categorical_columns)
    return sorted(categorical | {column for column in range(reference.shape[1]) if column not in categorical
                                 and len(np.unique(reference[:, column])) <= MAX_LEVELS_AS_CATEGORIES})


def _shifted(windows: np.ndarray, as_categories: bool, column: int, rng: np.random.Generator) -> np.ndarray:
    """The windows' `column` shifted (`CALIBRATION_SHIFT`); the other columns as they were."""
    shifted = windows[..., column].copy()
    if as_categories:
        values, counts = np.unique(shifted, return_counts=True)
        common = values[np.argmax(counts)]
        others = values[values != common]
        moved = (shifted == common) & (rng.random(shifted.shape) < CALIBRATION_SHIFT)
        if len(others):
            shifted[moved] = rng.choice(others, size=int(moved.sum()))
    else:
        shifted *= 1 + CALIBRATION_SHIFT
    return shifted


def sample_windows(rows: np.ndarray, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """`count` windows of `size` distinct rows each (no row twice in a window, as in real traffic)."""
    return np.stack([rows[rng.choice(len(rows), size=size, replace=False)] for _ in range(count)])


def column_detectors(reference: np.ndarray, categorical: Sequence[int]) -> list:
    """One detector per column of `reference`, each testing that column as the whole detector tests it."""
    return [tabular_drift(reference[:, [column]], [0] if column in categorical else [], DESIGN_ALPHA)
            for column in range(reference.shape[1])]


def calibrate(reference: np.ndarray, features: list[str], categorical: Sequence[int], held_out: np.ndarray,
              seed: int) -> Calibration:
    """Pick the threshold (held-out false alarms <= 5 %) and the smallest window with >= 90 % median power,
    among the windows the held-out rows can fill.

    A window with one column shifted keeps every other column's p-value, so the power runs test the shifted
    column alone, with a one-column detector on its reference column (the same alibi-detect test the whole
    detector runs for it), and take the other columns' p-values from the unshifted window: the same corrected
    minimum as testing the whole shifted window, at one test instead of one per column.
    """
    detector = tabular_drift(reference, categorical, DESIGN_ALPHA)
    one_column = column_detectors(reference, categorical)
    rng = np.random.default_rng(seed)
    power_by_window: dict[int, float] = {}
    chosen = None
    # Windows of distinct held-out rows: small data (under 100 held-out rows) gets one window of all of them.
    for size in [size for size in WINDOW_CANDIDATES if size <= len(held_out)] or [len(held_out)]:
        null = sample_windows(held_out, NULL_WINDOWS, size, rng)
        scores = np.sort([corrected_min_p(detector, w) for w in null])
        # At most 5 % of the unshifted windows may fall below the threshold.
        allowed = int(math.floor(MAX_FALSE_ALARM_RATE * NULL_WINDOWS))
        threshold = float(min(DESIGN_ALPHA, scores[allowed]))
        false_alarms = float(np.mean(scores < threshold))
        base = sample_windows(held_out, SHIFTED_WINDOWS, size, rng)
        base_p = np.stack([detector.score(w)[0] for w in base])  # (windows, columns)
        powers = []
        for column, column_detector in enumerate(one_column):
            shifted = _shifted(base, column in categorical, column, rng)
            p_values = base_p.copy()
            p_values[:, column] = [column_detector.score(w[:, None])[0][0] for w in shifted]
            powers.append(float(np.mean(bonferroni_min(p_values) < threshold)))
        power = float(np.median(powers))
        power_by_window[size] = power
        chosen = Calibration(size, threshold, false_alarms, power, features, power_by_window,
                             dict(zip(features, powers)))
        if power >= TARGET_POWER or size * 2 > len(held_out):  # the next size would not fit the held-out rows
            break
    return chosen


class DetectorError(ValueError):
    """A saved detector is incomplete, malformed, or names a file outside its folder."""


def tabular_drift(reference: np.ndarray, categorical: Sequence[int], p_val: float):
    """alibi-detect's TabularDrift over encoded reference rows: KS for numeric, chi-squared for `categorical`
    columns (categories taken from the reference, plus those a window brings), Bonferroni-corrected."""
    from alibi_detect.cd import TabularDrift

    return TabularDrift(reference, p_val=p_val, categories_per_feature={int(i): None for i in categorical},
                        correction="bonferroni")


def save_detector(reference: np.ndarray, categorical: Sequence[int], p_val: float, folder: str | Path) -> None:
    """Write the detector as data: the reference as .npy and the JSON config that `load_detector` reads."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / REFERENCE_FILE, np.asarray(reference, dtype=np.float32), allow_pickle=False)
    config = {"format": DETECTOR_FORMAT, "detector": "TabularDrift", REFERENCE_FIELD: REFERENCE_FILE,
              "p_val": float(p_val), "categorical_features": [int(i) for i in categorical], "correction": "bonferroni"}
    (out / DETECTOR_CONFIG).write_text(json.dumps(config, indent=1))


def load_detector(folder: str | Path):
    """Rebuild the TabularDrift saved by `save_detector`; DetectorError names the problem (see `load_reference`)."""
    return tabular_drift(*load_reference(folder))


def load_reference(folder: str | Path) -> tuple[np.ndarray, list[int], float]:
    """The reference rows (the encoded training sample), the categorical columns and the p-value that
    `save_detector` wrote, checked; DetectorError names the problem. Reads no code, and needs no alibi-detect.

    Only the config and the reference file it names may be in the folder, the name must be a
    plain file name in it (no '/', no '..'), and the reference must be a 2-D numeric array:
    np.load runs with allow_pickle=False, so an object array is refused, never unpickled.
    """
    where = Path(folder)
    try:
        config = json.loads((where / DETECTOR_CONFIG).read_text())
    except (OSError, ValueError) as error:
        raise DetectorError(f"{where / DETECTOR_CONFIG} is unreadable: {error}") from None
    if not isinstance(config, dict):
        raise DetectorError(f"{where / DETECTOR_CONFIG}: expected a JSON object")
    if config.get("format") != DETECTOR_FORMAT:
        raise DetectorError(f"{where / DETECTOR_CONFIG}: format {str(config.get('format'))[:40]!r}, "
                            f"expected {DETECTOR_FORMAT!r}")
    name = config.get(REFERENCE_FIELD)
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise DetectorError(f"{where / DETECTOR_CONFIG}: {REFERENCE_FIELD} must name a file in {where}, "
                            f"not {str(name)[:80]!r}")
    others = sorted(set(p.name for p in where.iterdir()) - {DETECTOR_CONFIG, name})
    if others:
        raise DetectorError(f"{where}: {others[0]} is not part of a saved detector ({DETECTOR_CONFIG} and {name} only)")
    try:
        reference = np.load(where / name, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DetectorError(f"{where / name} is not a numeric .npy array (pickled data is refused): {error}") from None
    if not isinstance(reference, np.ndarray):  # an .npz archive loads as a lazy NpzFile
        reference.close()
        raise DetectorError(f"{where / name} is an .npz archive, expected one .npy array")
    if reference.ndim != 2 or reference.dtype.kind not in "fiu":
        raise DetectorError(f"{where / name}: a {reference.ndim}-D {reference.dtype} array, expected 2-D numbers")
    categorical = config.get("categorical_features")
    width = reference.shape[1]
    if not (isinstance(categorical, list) and all(isinstance(i, int) and 0 <= i < width for i in categorical)):
        raise DetectorError(f"{where / DETECTOR_CONFIG}: categorical_features must list column indices below "
                            f"{width}")
    p_val = config.get("p_val")
    if not isinstance(p_val, float) or not 0 < p_val < 1:
        raise DetectorError(f"{where / DETECTOR_CONFIG}: p_val must be a number in (0, 1), not {str(p_val)[:40]}")
    return reference, categorical, p_val


def fit_drift_files(
    use_case, train_file: str, valid_file: str, feature_set_file: str, detector_dir: str
) -> Calibration:
    """Fit TabularDrift on train (raw features), calibrate on valid, save both to detector_dir."""
    encoder = DriftEncoder(FeatureSet.load(feature_set_file))
    train = pd.read_parquet(train_file)
    reference = encoder.encode_frame(train.sample(min(len(train), MAX_REFERENCE_ROWS), random_state=use_case.split.seed))
    held_out = encoder.encode_frame(pd.read_parquet(valid_file))
    categorical = tested_as_categories(reference, encoder)
    calibration = calibrate(reference, encoder.columns, categorical, held_out, use_case.split.seed)
    # The saved detector decides with the calibrated threshold (alibi divides it by the feature count).
    out = Path(detector_dir)
    save_detector(reference, categorical, calibration.threshold, out / DETECTOR_DIR)
    (out / CALIBRATION_FILE).write_text(json.dumps(asdict(calibration), indent=1))
    weakest = calibration.weakest_feature
    print(
        f"drift: window {calibration.window_size} rows, threshold {calibration.threshold:.4f}, "
        f"false alarms {calibration.false_alarm_rate:.1%} and power {calibration.power:.0%} on held-out windows "
        f"(a 30 % shift of the median feature; weakest: {weakest}, "
        f"{calibration.power_by_feature[weakest]:.0%})"
    )
    return calibration


def load_calibration(detector_dir: str | Path) -> Calibration:
    document = json.loads((Path(detector_dir) / CALIBRATION_FILE).read_text())
    document["power_by_window"] = {int(k): v for k, v in document["power_by_window"].items()}
    return Calibration(**document)
