"""The FeatureSet: one fitted object that turns raw rows into model inputs.

It is built from a **plan** (which encoding each categorical column gets, which numeric
transforms and generated features are used; `engineering.py` chooses it on validation)
and fitted on the training split. Training transforms whole frames with `transform`;
the serving runtime transforms one JSON record at a time with `transform_record`. Both
run the same code over the same fitted state (a record is a batch of one), so row i of
a batch equals the transformed record i exactly: no training/serving skew.

The one deliberate difference is `transform_training`, for the training rows only:
target encodings there are computed out of fold, so that a row's own label never
leaks into its features. It is saved as plain JSON (never pickle) with a version hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flowline.contract import parse_datetimes
from flowline.use_case import UseCase

FORMAT = "flowline.featureset/v2"
MAX_CATEGORIES = 50  # one-hot keeps the most frequent categories
MAX_VOCABULARY = 1000  # target and frequency encodings remember at most this many categories
ONE_HOT_MAX_CARDINALITY = 15  # above this, target encoding is the default
TARGET_FOLDS = 5
TARGET_SMOOTHING = 10.0  # pseudo-rows at the prior: rare categories lean towards the overall rate
CALENDAR_PARTS = ("month", "day_of_week", "day_of_month", "hour")
NO_EVENT = -1.0  # recency when an entity has no earlier event
ENCODINGS = ("one_hot", "target", "frequency")

Values = Mapping[str, np.ndarray]


class FeatureError(ValueError):
    """A row or record cannot be transformed: a missing column or a value of the wrong type."""


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


# ---- raw inputs: each column is parsed (and imputed) once; features read the parsed arrays


@dataclass(frozen=True)
class NumericInput:
    column: str
    fill: float


@dataclass(frozen=True)
class CategoricalInput:
    """Values are matched as stripped text, as ingest stores them; blank counts as missing."""

    column: str
    categories: tuple[str, ...]  # the training vocabulary, most frequent first


@dataclass(frozen=True)
class TimeInput:
    """A datetime column (parsed with `format`, as ingest parses it) or a numeric time, in seconds."""

    column: str
    is_datetime: bool
    format: Optional[str] = None


# ---- features: each reads parsed arrays and returns (rows x width) float64


@dataclass(frozen=True)
class Numeric:
    kind: ClassVar[str] = "numeric"
    column: str
    transform: str = "identity"  # or "log1p": sign(x) * log(1 + |x|)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def names(self) -> list[str]:
        return [self.column] if self.transform == "identity" else [f"{self.transform}({self.column})"]

    def compute(self, values: Values) -> np.ndarray:
        x = values[self.column]
        return (x if self.transform == "identity" else np.sign(x) * np.log1p(np.abs(x)))[:, None]


class _OneColumn:
    """A feature of one categorical column (`column`)."""

    column: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.column,)


class _Vocabulary(_OneColumn):
    """A feature that looks categories up in the training vocabulary (`categories`)."""

    categories: tuple[str, ...]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {category: i for i, category in enumerate(self.categories)}


@dataclass(frozen=True)
class OneHot(_Vocabulary):
    """One indicator per known category; unknown and missing values set none of them."""

    kind: ClassVar[str] = "one_hot"
    column: str
    categories: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [f"{self.column}={category}" for category in self.categories]

    def compute(self, values: Values) -> np.ndarray:
        index, text = self._index, values[self.column]
        out = np.zeros((len(text), len(self.categories)))
        for row, value in enumerate(text):  # a plain loop: cheapest for the one-row requests a server sees
            position = index.get(value)
            if position is not None:
                out[row, position] = 1.0
        return out


@dataclass(frozen=True)
class TargetEncoding(_OneColumn):
    """The smoothed label mean of the category; unknown and missing values get the prior."""

    kind: ClassVar[str] = "target"
    column: str
    means: dict[str, float]
    prior: float

    @property
    def names(self) -> list[str]:
        return [f"target({self.column})"]

    def compute(self, values: Values) -> np.ndarray:
        means, prior = self.means, self.prior
        return np.array([means.get(v, prior) for v in values[self.column]], dtype=np.float64)[:, None]

    @classmethod
    def fit(cls, column: str, text: np.ndarray, y: np.ndarray, vocabulary: Sequence[str]) -> TargetEncoding:
        """Smoothed means of `y` per category of `vocabulary` seen in `text`; the prior is the mean of `y`."""
        prior = float(np.mean(y)) if len(y) else 0.0
        frame = pd.DataFrame({"v": text, "y": y}).dropna(subset=["v"])
        stats = frame.groupby("v")["y"].agg(["sum", "count"])
        known = [c for c in vocabulary if c in stats.index]
        smoothed = (stats.loc[known, "sum"] + TARGET_SMOOTHING * prior) / (stats.loc[known, "count"] + TARGET_SMOOTHING)
        return cls(column=column, means={c: float(v) for c, v in smoothed.items()}, prior=prior)


@dataclass(frozen=True)
class Frequency(_OneColumn):
    """The share of training rows with the category; unknown and missing values get 0."""

    kind: ClassVar[str] = "frequency"
    column: str
    frequencies: dict[str, float]

    @property
    def names(self) -> list[str]:
        return [f"frequency({self.column})"]

    def compute(self, values: Values) -> np.ndarray:
        frequencies = self.frequencies
        return np.array([frequencies.get(v, 0.0) for v in values[self.column]], dtype=np.float64)[:, None]


@dataclass(frozen=True)
class CategoryCode(_Vocabulary):
    """The category's index in the training vocabulary, for trees' native categorical splits; unknown
    and missing values are NaN (XGBoost's missing)."""

    kind: ClassVar[str] = "code"
    column: str
    categories: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [f"code({self.column})"]

    def compute(self, values: Values) -> np.ndarray:
        index = self._index
        return np.array([index.get(v, np.nan) for v in values[self.column]], dtype=np.float64)[:, None]


@dataclass(frozen=True)
class FeatureLayout:
    """Which encoded columns each kind of model reads, when the FeatureSet has category codes.

    `trees` (xgboost, forest): numbers, generated features and the codes, with XGBoost
    feature types ("c" for a code); `dense` (linear, mlp): everything but the codes.
    """

    trees: tuple[int, ...]
    tree_types: tuple[str, ...]
    dense: tuple[int, ...]


@dataclass(frozen=True)
class Product:
    """left * right of the imputed values (left == right: the square)."""

    kind: ClassVar[str] = "product"
    left: str
    right: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.left,) if self.left == self.right else (self.left, self.right)

    @property
    def names(self) -> list[str]:
        return [f"{self.left}^2" if self.left == self.right else f"{self.left}*{self.right}"]

    def compute(self, values: Values) -> np.ndarray:
        return (values[self.left] * values[self.right])[:, None]


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator of the imputed values, 0 where the denominator is 0."""

    kind: ClassVar[str] = "ratio"
    numerator: str
    denominator: str

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.numerator, self.denominator)

    @property
    def names(self) -> list[str]:
        return [f"{self.numerator}/{self.denominator}"]

    def compute(self, values: Values) -> np.ndarray:
        a, b = values[self.numerator], values[self.denominator]
        return np.divide(a, b, out=np.zeros_like(a), where=b != 0)[:, None]


@dataclass(frozen=True)
class Calendar:
    """Parts of a datetime (UTC): month 1-12, day_of_week 0 (Monday)-6, day_of_month 1-31, hour 0-23.

    A missing time gives NO_EVENT for every part.
    """

    kind: ClassVar[str] = "calendar"
    column: str
    parts: tuple[str, ...] = CALENDAR_PARTS

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.column,)

    @property
    def names(self) -> list[str]:
        return [f"{self.column}.{part}" for part in self.parts]

    def compute(self, values: Values) -> np.ndarray:
        seconds = values[self.column]
        missing = np.isnan(seconds)
        stamp = np.where(missing, 0, seconds).astype(np.int64).astype("datetime64[s]")
        days = stamp.astype("datetime64[D]")
        months = stamp.astype("datetime64[M]")
        computed = {
            "month": months.astype(np.int64) % 12 + 1,
            "day_of_week": (days.astype(np.int64) + 3) % 7,  # 1970-01-01 was a Thursday
            "day_of_month": (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
            "hour": (stamp - days.astype("datetime64[s]")).astype(np.int64) // 3600,
        }
        out = np.stack([computed[part].astype(np.float64) for part in self.parts], axis=1)
        out[missing] = NO_EVENT
        return out


@dataclass(frozen=True)
class EntityHistory:
    """Per entity, the times of its training events (sorted) and running sums of amounts.

    The state behind recency and rolling-window features: a row at time t sees only the
    entity's events strictly before t, so training rows never see themselves or later
    rows, and a served request sees the history as of training.
    """

    entity: str
    time: str
    amounts: tuple[str, ...]
    events: dict[str, dict[str, list[float]]]  # entity -> {"time": [...], amount: cumulative sums with a leading 0}

    @classmethod
    def fit(cls, keys: np.ndarray, times: np.ndarray, amounts: dict[str, np.ndarray], entity: str, time: str) -> EntityHistory:
        frame = pd.DataFrame({"key": keys, "time": times, **amounts}).dropna(subset=["key", "time"])
        frame = frame.sort_values(["key", "time"], kind="stable")
        events = {}
        for key, group in frame.groupby("key", sort=True):
            entry = {"time": group["time"].tolist()}
            for name in amounts:
                entry[name] = [0.0, *np.cumsum(group[name].to_numpy(dtype=np.float64)).tolist()]
            events[str(key)] = entry
        return cls(entity=entity, time=time, amounts=tuple(amounts), events=events)


@dataclass(frozen=True)
class EntityFeatures:
    """Recency and rolling counts and sums of amounts per entity over windows (in seconds).

    `outputs` lists what to compute: ("recency",), ("count", window) or ("sum", window, amount).
    """

    kind: ClassVar[str] = "entity"
    history: EntityHistory
    outputs: tuple[tuple, ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.history.entity, self.history.time, *sorted({o[2] for o in self.outputs if o[0] == "sum"}))

    @property
    def names(self) -> list[str]:
        entity = self.history.entity
        names = {"recency": lambda o: f"recency({entity})",
                 "count": lambda o: f"count({entity}, {o[1]:g}s)",
                 "sum": lambda o: f"sum({o[2]} by {entity}, {o[1]:g}s)"}
        return [names[o[0]](o) for o in self.outputs]

    def compute(self, values: Values) -> np.ndarray:
        keys, times = values[self.history.entity], values[self.history.time]
        out = np.zeros((len(keys), len(self.outputs)))
        for j, output in enumerate(self.outputs):
            if output[0] == "recency":
                out[:, j] = NO_EVENT
        rows_by_key: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key is not None and not np.isnan(times[i]):
                rows_by_key.setdefault(key, []).append(i)
        for key, rows in rows_by_key.items():
            events = self.history.events.get(key)
            if events is None:
                continue
            history_times = np.asarray(events["time"])
            t = times[rows]
            before = np.searchsorted(history_times, t, side="left")  # events strictly before t
            for j, output in enumerate(self.outputs):
                if output[0] == "recency":
                    has_one = before > 0
                    out[np.asarray(rows)[has_one], j] = t[has_one] - history_times[before[has_one] - 1]
                    continue
                start = np.searchsorted(history_times, t - output[1], side="left")
                if output[0] == "count":
                    out[rows, j] = before - start
                else:
                    sums = np.asarray(events[output[2]])
                    out[rows, j] = sums[before] - sums[start]
        return out


Feature = Union[Numeric, OneHot, TargetEncoding, Frequency, CategoryCode, Product, Ratio, Calendar, EntityFeatures]
FEATURE_KINDS = {kind.kind: kind for kind in (Numeric, OneHot, TargetEncoding, Frequency, CategoryCode, Product, Ratio,
                                               Calendar)}


# ---- the plan: what engineering chose, before anything is fitted


@dataclass(frozen=True)
class FeaturePlan:
    """Choices only, no fitted state: small, JSON, and enough to refit the same FeatureSet.

    `generated` holds {"kind": "product", "left", "right"}, {"kind": "ratio", "numerator",
    "denominator"}, {"kind": "calendar"} and {"kind": "entity", "outputs": [...]}.
    """

    encodings: dict[str, str] = field(default_factory=dict)
    transforms: dict[str, str] = field(default_factory=dict)
    generated: tuple[dict, ...] = ()
    native_categorical: bool = False  # add a category code per categorical column, for the tree families

    def to_dict(self) -> dict:
        return {"encodings": dict(self.encodings), "transforms": dict(self.transforms),
                "generated": [dict(g) for g in self.generated], "native_categorical": self.native_categorical}

    @classmethod
    def from_dict(cls, document: Mapping) -> FeaturePlan:
        generated = tuple({**g, **({"outputs": [list(o) for o in g["outputs"]]} if "outputs" in g else {})}
                          for g in document.get("generated", []))
        return cls(dict(document.get("encodings", {})), dict(document.get("transforms", {})), generated,
                   bool(document.get("native_categorical", False)))

    def with_encoding(self, column: str, encoding: str) -> FeaturePlan:
        return replace(self, encodings={**self.encodings, column: encoding})

    def with_transform(self, column: str, transform: str) -> FeaturePlan:
        return replace(self, transforms={**self.transforms, column: transform})

    def with_generated(self, feature: dict) -> FeaturePlan:
        return replace(self, generated=(*self.generated, feature))


def default_encoding(cardinality: int) -> str:
    return "one_hot" if cardinality <= ONE_HOT_MAX_CARDINALITY else "target"


def default_plan(frame: pd.DataFrame, use_case: UseCase) -> FeaturePlan:
    """Encodings by cardinality, numbers as they are, nothing generated; category codes for the tree
    families when the use case asks for native categorical splits."""
    encodings = {}
    for column in use_case.feature_columns:
        if not use_case.columns[column].is_numeric:
            encodings[column] = default_encoding(int(frame[column].nunique()))
    return FeaturePlan(encodings=encodings, native_categorical=use_case.features.native_categorical)


def _numeric_values(raw: pd.Series, column: str, fill: float) -> np.ndarray:
    values = pd.to_numeric(raw, errors="coerce")
    blank = raw.isna() | raw.map(_is_blank)
    bad = values.isna() & ~blank
    if bad.any():
        raise FeatureError(f"column {column!r}: {raw[bad].iloc[0]!r} is not a number")
    return values.where(~blank, fill).to_numpy(dtype=np.float64)


def _text_values(raw: pd.Series) -> np.ndarray:
    text = raw.astype(str).str.strip()
    return text.where(raw.notna() & (text != ""), None).to_numpy(dtype=object)


def _seconds(raw: pd.Series, source: TimeInput) -> np.ndarray:
    if not source.is_datetime:
        return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    if pd.api.types.is_datetime64_any_dtype(raw):
        stamps = raw.astype("datetime64[ns]")
    else:
        stamps = parse_datetimes(raw.astype("string").str.strip(), source.format)
    nanoseconds = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    return np.where(stamps.isna().to_numpy(), np.nan, nanoseconds / 1e9)


class FeatureSet:
    """Fitted inputs and features; see the module docstring."""

    def __init__(
        self,
        numeric: list[NumericInput],
        categorical: list[CategoricalInput],
        time: Optional[TimeInput],
        entity: Optional[str],
        features: list[Feature],
        plan: FeaturePlan,
        label: dict,
    ) -> None:
        self.numeric, self.categorical, self.time, self.entity = list(numeric), list(categorical), time, entity
        self.features, self.plan, self.label = list(features), plan, dict(label)
        self._fills = {i.column: i.fill for i in self.numeric}
        self.feature_names = [name for feature in self.features for name in feature.names]
        used = {column for feature in self.features for column in feature.inputs}
        declared = [i.column for i in self.numeric] + [i.column for i in self.categorical]
        declared += [c for c in (time.column if time else None, entity) if c]
        self.input_columns = [column for column in declared if column in used]

    @property
    def width(self) -> int:
        return len(self.feature_names)

    @property
    def generated_names(self) -> list[str]:
        """Names of the generated features (interactions, time features), after the encoded columns."""
        encoded = len(self.numeric) + len(self.categorical)
        return [name for feature in self.features[encoded:] if not isinstance(feature, CategoryCode)
                for name in feature.names]

    @property
    def layout(self) -> Optional[FeatureLayout]:
        """The columns the tree families and the others read (FeatureLayout); None without category codes,
        when every family reads every column."""
        coded = {f.column for f in self.features if isinstance(f, CategoryCode)}
        if not coded:
            return None
        trees, types, dense, position = [], [], [], 0
        for feature in self.features:
            encodes_coded = isinstance(feature, (OneHot, TargetEncoding, Frequency)) and feature.column in coded
            for _ in feature.names:
                if isinstance(feature, CategoryCode):
                    trees.append(position)
                    types.append("c")
                elif encodes_coded:
                    dense.append(position)
                else:
                    trees.append(position)
                    types.append("q")
                    dense.append(position)
                position += 1
        return FeatureLayout(tuple(trees), tuple(types), tuple(dense))

    @property
    def owners(self) -> np.ndarray:
        """(width x input columns) weights: each feature's share of each raw column, rows summing to 1.

        Used to add SHAP contributions of encoded features up to the raw columns.
        """
        out = np.zeros((self.width, len(self.input_columns)))
        row = 0
        for feature in self.features:
            for _ in feature.names:
                for column in feature.inputs:
                    out[row, self.input_columns.index(column)] = 1 / len(feature.inputs)
                row += 1
        return out

    # ---- fitting

    @classmethod
    def fit(cls, frame: pd.DataFrame, use_case: UseCase, plan: Optional[FeaturePlan] = None) -> FeatureSet:
        """Learn fills, vocabularies and encodings on `frame` (the training split) for `plan`."""
        plan = plan or default_plan(frame, use_case)
        numeric, categorical = [], []
        for column in use_case.feature_columns:
            spec = use_case.columns[column]
            if spec.is_numeric:
                observed = frame[column].dropna().astype("float64")
                if isinstance(spec.impute, (int, float)):
                    fill = float(spec.impute)
                elif observed.empty:
                    fill = 0.0
                else:
                    fill = float(observed.mean() if spec.impute == "mean" else observed.median())
                numeric.append(NumericInput(column, fill))
            else:
                text = _text_values(frame[column])
                counts = pd.Series(text).dropna().value_counts(sort=False)
                ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:MAX_VOCABULARY]
                categorical.append(CategoricalInput(column, tuple(c for c, _ in ordered)))
        time = None
        if use_case.time_column:
            spec = use_case.columns[use_case.time_column]
            time = TimeInput(use_case.time_column, spec.type == "datetime", spec.format)
        label = {"column": use_case.label.column, "positive": use_case.label.positive}
        draft = cls(numeric, categorical, time, use_case.features.entity_column, [], plan, label)
        values = draft._frame_values(frame, [c.column for c in numeric + categorical] + (
            [time.column] if time else []) + ([draft.entity] if draft.entity else []))
        needs_labels = "target" in plan.encodings.values()
        y = draft.labels(frame) if needs_labels else np.zeros(len(frame))
        features: list[Feature] = [Numeric(i.column, plan.transforms.get(i.column, "identity")) for i in numeric]
        for source in categorical:
            features.append(_fit_encoding(source, plan.encodings.get(source.column, "one_hot"),
                                          values[source.column], y))
        for generated in plan.generated:
            features.append(draft._fit_generated(generated, values))
        if plan.native_categorical:
            features += [CategoryCode(source.column, source.categories) for source in categorical]
        return cls(numeric, categorical, time, draft.entity, features, plan, label)

    def _fit_generated(self, generated: Mapping, values: Values) -> Feature:
        kind = generated["kind"]
        if kind in ("product", "ratio"):
            feature = Product(generated["left"], generated["right"]) if kind == "product" else Ratio(
                generated["numerator"], generated["denominator"])
            numeric = {i.column for i in self.numeric}
            if not set(feature.inputs) <= numeric:
                raise FeatureError(f"{kind} of {list(feature.inputs)}: needs numeric feature columns, "
                                   f"not {sorted(set(feature.inputs) - numeric)}")
            return feature
        if kind == "calendar" and self.time is not None and self.time.is_datetime:
            return Calendar(self.time.column)
        if kind == "entity" and self.entity is not None:
            outputs = tuple(tuple(o) for o in generated["outputs"])
            amounts = sorted({o[2] for o in outputs if o[0] == "sum"})
            history = EntityHistory.fit(values[self.entity], values[self.time.column],
                                        {a: values[a] for a in amounts}, self.entity, self.time.column)
            return EntityFeatures(history, outputs)
        raise FeatureError(f"generated feature {dict(generated)} does not fit this use case (calendar needs a "
                           f"datetime time_column, entity needs features.entity_column)")

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """The encoded label of a frame (binary: 1 for the positive class)."""
        column = self.label["column"]
        if column not in frame.columns:
            raise FeatureError(f"missing label column {column!r}")
        if self.label["positive"] is not None:
            return (frame[column].astype(str) == self.label["positive"]).to_numpy(dtype=np.float64)
        return frame[column].to_numpy(dtype=np.float64)

    # ---- transforming

    def _frame_values(self, frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise FeatureError(f"missing column(s) {missing}")
        values = {}
        for column in columns:
            if column in self._fills:
                values[column] = _numeric_values(frame[column], column, self._fills[column])
            elif self.time is not None and column == self.time.column:
                values[column] = _seconds(frame[column], self.time)
            else:
                values[column] = _text_values(frame[column])
        return values

    def _record_values(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
        fills = self._fills
        values = {}
        for column in self.input_columns:
            try:
                value = record[column]
            except KeyError:
                raise FeatureError(f"missing column {column!r}") from None
            if column in fills:
                if _is_blank(value):
                    number = fills[column]
                else:
                    try:
                        number = float(value)
                    except (TypeError, ValueError):
                        raise FeatureError(f"column {column!r}: {value!r} is not a number") from None
                values[column] = np.array([number])
            elif self.time is not None and column == self.time.column:
                values[column] = _seconds(pd.Series([None if _is_blank(value) else value], dtype=object), self.time)
            else:
                values[column] = np.array([None if _is_blank(value) else str(value).strip()], dtype=object)
        return values

    def _assemble(self, values: Values, rows: int, features: Sequence[Feature]) -> np.ndarray:
        if not features:
            return np.zeros((rows, 0), dtype=np.float32)
        return np.concatenate([f.compute(values) for f in features], axis=1).astype(np.float32)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Transform a frame of raw columns into a float32 matrix (rows x width)."""
        return self._assemble(self._frame_values(frame, self.input_columns), len(frame), self.features)

    def transform_record(self, record: Mapping[str, Any]) -> np.ndarray:
        """Transform one record {column: value} into a float32 vector, exactly like `transform`."""
        return self._assemble(self._record_values(record), 1, self.features)[0]

    def transform_training(self, frame: pd.DataFrame) -> np.ndarray:
        """`transform` for the training split itself: target encodings out of fold (TARGET_FOLDS, seeded).

        Each row's target encoding comes from the other folds, so a model never learns
        from a feature that contains its own label.
        """
        matrix = self.transform(frame)
        target_positions = []
        offset = 0
        for feature in self.features:
            if isinstance(feature, TargetEncoding):
                target_positions.append((offset, feature))
            offset += len(feature.names)
        if not target_positions:
            return matrix
        y = self.labels(frame)
        folds = np.random.default_rng(0).permutation(len(frame)) % TARGET_FOLDS
        values = self._frame_values(frame, [f.column for _, f in target_positions])
        for position, feature in target_positions:
            source = next(c for c in self.categorical if c.column == feature.column)
            text = values[feature.column]
            for fold in range(TARGET_FOLDS):
                held_out = folds == fold
                encoder = TargetEncoding.fit(feature.column, text[~held_out], y[~held_out], source.categories)
                matrix[held_out, position] = encoder.compute({feature.column: text[held_out]})[:, 0]
        return matrix

    # ---- saving

    def to_dict(self) -> dict:
        content = {
            "inputs": {
                "numeric": [asdict(i) for i in self.numeric],
                "categorical": [{"column": i.column, "categories": list(i.categories)} for i in self.categorical],
                "time": asdict(self.time) if self.time else None,
                "entity": self.entity,
            },
            "features": [_feature_to_dict(f) for f in self.features],
            "plan": self.plan.to_dict(),
            "label": self.label,
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
        inputs = document["inputs"]
        return cls(
            [NumericInput(**i) for i in inputs["numeric"]],
            [CategoricalInput(i["column"], tuple(i["categories"])) for i in inputs["categorical"]],
            TimeInput(**inputs["time"]) if inputs["time"] else None,
            inputs["entity"],
            [_feature_from_dict(f) for f in document["features"]],
            FeaturePlan.from_dict(document["plan"]),
            document["label"],
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _fit_encoding(source: CategoricalInput, encoding: str, text: np.ndarray, y: np.ndarray) -> Feature:
    if encoding == "one_hot":
        return OneHot(source.column, tuple(sorted(source.categories[:MAX_CATEGORIES])))
    if encoding == "target":
        return TargetEncoding.fit(source.column, text, y, source.categories)
    if encoding == "frequency":
        counts = pd.Series(text).dropna().value_counts()
        known = [c for c in source.categories if c in counts.index]
        return Frequency(source.column, {c: float(counts[c] / len(text)) for c in known})
    raise FeatureError(f"column {source.column!r}: unknown encoding {encoding!r}; expected one of {ENCODINGS}")


def _feature_to_dict(feature: Feature) -> dict:
    if isinstance(feature, EntityFeatures):
        return {"kind": feature.kind, "history": asdict(feature.history), "outputs": [list(o) for o in feature.outputs]}
    document = asdict(feature)
    return {"kind": feature.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in document.items()}}


def _feature_from_dict(document: dict) -> Feature:
    fields = {k: v for k, v in document.items() if k != "kind"}
    if document["kind"] == "entity":
        history = fields["history"]
        return EntityFeatures(
            EntityHistory(history["entity"], history["time"], tuple(history["amounts"]), history["events"]),
            tuple(tuple(o) for o in fields["outputs"]),
        )
    kind = FEATURE_KINDS[document["kind"]]
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
