"""The training profile a package records, and which values of new rows fall outside it.

A package records, for each numeric input, the values of its drift detector's reference (a sample of
up to drift.MAX_REFERENCE_ROWS training rows, blanks filled as the FeatureSet fills them), and for each
categorical input the training vocabulary (the FeatureSet's categories). A value is out of profile when
a number lies outside the reference's [min, max], or a category is not in the vocabulary (a blank is not
counted: the FeatureSet fills it). Such rows are still scored, as the model server scores them; the
counts per column tell a batch run's owner how far the data has moved from what the model learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flowline.drift import DETECTOR_DIR, DriftEncoder, load_reference
from flowline.features.feature_set import FeatureSet


@dataclass(frozen=True)
class TrainingProfile:
    """Numeric ranges and categorical vocabularies of the training rows; see the module docstring."""

    ranges: dict[str, tuple[float, float]]
    vocabularies: dict[str, frozenset[str]]

    @classmethod
    def of_package(cls, drift_dir: str | Path, feature_set: FeatureSet) -> TrainingProfile:
        """The profile of a verified package, from its drift folder and its FeatureSet."""
        reference, _, _ = load_reference(Path(drift_dir) / DETECTOR_DIR)
        numeric = [i.column for i in feature_set.numeric]
        columns = DriftEncoder(feature_set).columns  # the reference's columns: the numeric ones first
        ranges = {column: (float(reference[:, columns.index(column)].min()),
                           float(reference[:, columns.index(column)].max())) for column in numeric}
        return cls(ranges, {i.column: frozenset(i.categories) for i in feature_set.categorical})

    @property
    def columns(self) -> list[str]:
        return [*self.ranges, *self.vocabularies]

    def outside(self, typed: pd.DataFrame) -> dict[str, int]:
        """Per column, how many of the typed rows (as the contract returns them) lie outside the profile."""
        counts = {}
        for column, (low, high) in self.ranges.items():
            # in float32, as the reference holds them: a training value is never outside its own range
            values = pd.to_numeric(typed[column], errors="coerce").to_numpy(dtype=np.float32)
            counts[column] = int(((values < low) | (values > high)).sum())
        for column, vocabulary in self.vocabularies.items():  # the contract's text is stripped already
            values = typed[column]
            counts[column] = int((values.notna() & ~values.isin(vocabulary)).sum())
        return counts
