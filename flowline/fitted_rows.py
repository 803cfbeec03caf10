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
key is fixed, so a fingerprint is the same on every machine for the same values under the same contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from flowline.use_case import UseCase

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
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(np.uint64)


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
