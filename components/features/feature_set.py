"""The FeatureSet: one fitted object that turns raw rows into model inputs.

Training transforms whole frames with `transform`; the serving runtime transforms one
JSON record at a time with `transform_record`. Both read the same fitted state, and
row i of a batch equals the transformed record i exactly, so there is no
training/serving skew. It is saved as plain JSON (never pickle) with a version hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from flowline.pipelines.use_case import UseCase

FORMAT = "flowline.featureset/v1"
MAX_CATEGORIES = 50


class FeatureError(ValueError):
    """A row or record cannot be transformed: a missing column or a value of the wrong type."""


@dataclass(frozen=True)
class NumericFeature:
    column: str
    fill: float


@dataclass(frozen=True)
class OneHotFeature:
    """One indicator per known category; unknown and missing values set none of them.

    Values are matched as stripped text, as ingest stores them.
    """

    column: str
    categories: tuple[str, ...]


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


class FeatureSet:
    def __init__(self, numeric: list[NumericFeature], one_hot: list[OneHotFeature]) -> None:
        self.numeric = list(numeric)
        self.one_hot = list(one_hot)
        self.feature_names = [f.column for f in self.numeric] + [
            f"{f.column}={category}" for f in self.one_hot for category in f.categories
        ]
        # Compiled for serving: each category maps straight to its output position.
        offset = len(self.numeric)
        self._positions: list[tuple[str, dict[str, int]]] = []
        for feature in self.one_hot:
            self._positions.append((feature.column, {c: offset + i for i, c in enumerate(feature.categories)}))
            offset += len(feature.categories)

    @property
    def input_columns(self) -> list[str]:
        return [f.column for f in self.numeric] + [f.column for f in self.one_hot]

    @property
    def width(self) -> int:
        return len(self.feature_names)

    @classmethod
    def fit(cls, frame: pd.DataFrame, use_case: UseCase, max_categories: int = MAX_CATEGORIES) -> FeatureSet:
        """Learn fills for numeric columns and the category vocabulary of the others."""
        numeric, one_hot = [], []
        for column in use_case.feature_columns:
            spec = use_case.columns[column]
            values = frame[column]
            if spec.is_numeric:
                observed = values.dropna().astype("float64")
                if isinstance(spec.impute, (int, float)):
                    fill = float(spec.impute)
                elif observed.empty:
                    fill = 0.0
                else:
                    fill = float(observed.mean() if spec.impute == "mean" else observed.median())
                numeric.append(NumericFeature(column, fill))
            else:
                counts = values.dropna().astype(str).value_counts()
                top = counts.head(max_categories).index
                one_hot.append(OneHotFeature(column, tuple(sorted(top))))
        return cls(numeric, one_hot)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Transform a frame of raw columns into a float32 matrix (rows x width)."""
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise FeatureError(f"missing column(s) {missing}")
        out = np.zeros((len(frame), self.width), dtype=np.float32)
        for position, feature in enumerate(self.numeric):
            raw = frame[feature.column]
            values = pd.to_numeric(raw, errors="coerce")
            blank = raw.isna() | raw.map(_is_blank)
            bad = values.isna() & ~blank
            if bad.any():
                raise FeatureError(f"column {feature.column!r}: {raw[bad].iloc[0]!r} is not a number")
            out[:, position] = values.where(~blank, feature.fill).to_numpy(dtype=np.float64)
        rows = np.arange(len(frame))
        for column, positions in self._positions:
            raw = frame[column]
            text = raw.astype(str).str.strip().where(raw.notna(), None)
            found = text.map(positions)
            hit = found.notna().to_numpy()
            out[rows[hit], found[hit].to_numpy(dtype=np.int64)] = 1.0
        return out

    def transform_record(self, record: Mapping[str, Any]) -> np.ndarray:
        """Transform one record {column: value} into a float32 vector, exactly like `transform`."""
        row = np.zeros(self.width, dtype=np.float32)
        for position, feature in enumerate(self.numeric):
            try:
                value = record[feature.column]
            except KeyError:
                raise FeatureError(f"missing column {feature.column!r}") from None
            if _is_blank(value):
                row[position] = feature.fill
                continue
            try:
                row[position] = float(value)
            except (TypeError, ValueError):
                raise FeatureError(f"column {feature.column!r}: {value!r} is not a number") from None
        for column, positions in self._positions:
            try:
                value = record[column]
            except KeyError:
                raise FeatureError(f"missing column {column!r}") from None
            if value is not None:
                position = positions.get(str(value).strip())
                if position is not None:
                    row[position] = 1.0
        return row

    def to_dict(self) -> dict:
        content = {
            "numeric": [asdict(f) for f in self.numeric],
            "one_hot": [{"column": f.column, "categories": list(f.categories)} for f in self.one_hot],
        }
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]
        return {"format": FORMAT, "version": digest, **content}

    @property
    def version(self) -> str:
        """A hash of the fitted state: equal versions transform identically."""
        return self.to_dict()["version"]

    @classmethod
    def from_dict(cls, document: dict) -> FeatureSet:
        if document.get("format") != FORMAT:
            raise FeatureError(f"not a FeatureSet document (format {document.get('format')!r}, expected {FORMAT!r})")
        return cls(
            [NumericFeature(**f) for f in document["numeric"]],
            [OneHotFeature(f["column"], tuple(f["categories"])) for f in document["one_hot"]],
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        return cls.from_dict(json.loads(Path(path).read_text()))


def encode_label(values: pd.Series, use_case: UseCase) -> np.ndarray:
    """Binary: 1 for the positive class, else 0. Regression: the value as float."""
    if use_case.task == "binary":
        return (values.astype(str) == use_case.label.positive).to_numpy(dtype=np.float32)
    return values.to_numpy(dtype=np.float64)


def fit_feature_set_file(use_case: UseCase, train_file: str, feature_set_file: str) -> FeatureSet:
    """Fit on the training split only and save the FeatureSet as JSON."""
    feature_set = FeatureSet.fit(pd.read_parquet(train_file), use_case)
    feature_set.save(feature_set_file)
    print(
        f"features: {len(feature_set.input_columns)} columns -> {feature_set.width} features "
        f"(FeatureSet {feature_set.version})"
    )
    return feature_set
