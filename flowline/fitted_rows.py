"""The rows a model was fitted on, as fingerprints, so that a later model's champion comparison can leave them out.

The split is seeded over the rows as they come, so a retrain on data that changed (a refreshed extract, a few rows
more or fewer) puts most of the champion's training rows into the new test split, where the champion, having
learnt them, looks better than it is. A package therefore keeps the fingerprints of its train + valid rows
(FITTED_ROWS_FILE: sorted, unique, NumPy's format without pickles, 8 bytes a row), and evaluate compares champion
and challenger on the test rows the champion was not fitted on.

A row's fingerprint is a 64-bit hash of its ids where the use case declares `id_columns` (a customer trained on
stays seen when their values change), with its time where it has a `time_column` (CLV's customer rows are each
customer at a cut-off: the test split's later cut-off is not the rows the champion was fitted on), else of its
feature and label columns: pandas' hash_pandas_object, whose
key is fixed, so a fingerprint is the same on every machine for the same values.

A hash sees types: the number 7.0 and the text "7" hash apart. A later run whose contract types a column otherwise
(an id drafted as a number, then declared `{type: string}`; a column turned category by one stray value) would
find none of the champion's rows and compare it on them all again. So rows are hashed as the contract of the model
that was fitted types them (`as_declared`): the new run's test rows are read as the champion's contract read its
own. Under the same contract the columns already are so, and nothing is converted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from flowline.contract import as_text, column_numbers, parse_datetimes
from flowline.use_case import ColumnSpec, UseCase

FITTED_ROWS_FILE = "fitted_rows.npy"


def fingerprint_columns(use_case: UseCase) -> list[str]:
    """The columns a row's fingerprint hashes: its ids (and time), else its features and label."""
    if use_case.id_columns:
        return [*use_case.id_columns, *([use_case.time_column] if use_case.time_column else [])]
    return [*use_case.feature_columns, use_case.label.column]


def fingerprints(frame: pd.DataFrame, use_case: UseCase) -> np.ndarray:
    """Each row's fingerprint (uint64), in the frame's order; KeyError naming a column the frame lacks."""
    columns = fingerprint_columns(use_case)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise KeyError(f"the rows have no column {missing[0]!r}")
    typed = pd.DataFrame({column: as_declared(frame[column], use_case.columns.get(column)) for column in columns})
    return pd.util.hash_pandas_object(typed, index=False).to_numpy(np.uint64)


def as_declared(values: pd.Series, spec: ColumnSpec | None) -> pd.Series:
    """A column as a contract with `spec` types it (its dtype as ingest gives it), from how another contract typed
    it: text read as a number (with the spec's `strip` and `decimal`) or a date, a number written as text (7.0 as
    "7"); as it is where it already has that type, or has no spec (the label, typed by the label's own rules)."""
    if spec is None:
        return values
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    dated = pd.api.types.is_datetime64_any_dtype(values)
    if spec.is_numeric:
        return values.astype("float64") if numeric else column_numbers(_text(values), spec)
    if spec.type == "datetime":
        return values if dated else parse_datetimes(_text(values), spec.format)
    if numeric:  # the contract keeps a text cell as written; a whole number is most likely written without ".0"
        return values.map(_number_text, na_action="ignore").astype(object)
    return values


def _text(values: pd.Series) -> pd.Series:
    """A column's cells as the contract reads text: stripped, blank as missing."""
    text, blank = as_text(values)
    return text.where(~blank)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def fitted_on(frames: Iterable[pd.DataFrame], use_case: UseCase) -> np.ndarray:
    """The sorted, unique fingerprints of every row of `frames` (train and valid)."""
    return np.unique(np.concatenate([fingerprints(frame, use_case) for frame in frames]))


def save(path: str | Path, fitted: np.ndarray) -> None:
    np.save(path, np.asarray(fitted, dtype=np.uint64), allow_pickle=False)


def load(path: str | Path) -> np.ndarray:
    """The fingerprints saved at `path` (never unpickled: a package's file cannot run code)."""
    return np.load(path, allow_pickle=False)


def unseen(frame: pd.DataFrame, use_case: UseCase, fitted: np.ndarray) -> np.ndarray:
    """Which rows of `frame` (a boolean mask) have no fingerprint among `fitted`."""
    return ~np.isin(fingerprints(frame, use_case), fitted)
