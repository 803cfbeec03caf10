"""The FeatureSet: one fitted object that turns raw rows into model inputs.

It is built from a **plan** (which encoding each categorical column gets, which numeric
transforms and generated features are used; `engineering.py` chooses it on validation)
and fitted on the training split. Training transforms whole frames with `transform`;
the serving runtime transforms one JSON record at a time with `transform_record`. Both
run the same code over the same fitted state (a record is a batch of one), so row i of
a batch equals the transformed record i exactly: no training/serving skew.

Entity features (recency, rolling counts and sums per entity) read the history fitted at
training, or, in the set that `online(store)` returns, the events an online store holds
(flowline/online_store.py), which `seed` fills from the fitted history and served rows extend.

The one deliberate difference is `transform_training`, for the training rows only:
target encodings there are computed out of fold, so that a row's own label never
leaks into its features. It is saved as plain JSON (never pickle) with a version hash.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from flowline.contract import number_from_text, numbers_from_text, parse_datetimes
from flowline.features.kinds import (CategoricalInput, Calendar, CategoryCode, EntityFeatures, EntityHistory, Event,
                                     Feature, FeatureError, FeatureLayout, Frequency, MAX_VOCABULARY, Numeric, NumericInput,
                                     OneHot, Product, Ratio, TargetEncoding, TimeInput, Values, feature_from_dict,
                                     feature_to_dict, missing_amounts)
from flowline.features.plan import ENCODINGS, MAX_CATEGORIES, FeaturePlan, default_plan
from flowline.online_store import IncompatibleEvents, OnlineStore
from flowline.use_case import UseCase

FORMAT = "flowline.featureset/v3"  # v3: entity histories hold each event's amounts, not running sums
PREVIOUS_FORMAT = "flowline.featureset/v2"  # still read (`_upgraded`): packages trained before v3 keep serving
TARGET_FOLDS = 5
SEED_SOURCE = "fitted history"  # an online store takes a definition's fitted history once (FeatureSet.seed)
STORE_CHECK_ENTITIES = 100  # FeatureSet.check_store reads the stored events of this many known entities


def _numeric_values(raw: pd.Series, column: str, fill: float) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):  # typed already: only NaN is blank
        return raw.astype("float64").fillna(fill).to_numpy(dtype=np.float64)
    values = numbers_from_text(raw)
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
        return numbers_from_text(raw).to_numpy(dtype=np.float64)
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
        used |= {column for feature in self.features if isinstance(feature, EntityFeatures)
                 for column in feature.event_columns}  # a served row is an event too
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
                low, high = (float(observed.min()), float(observed.max())) if len(observed) else (None, None)
                numeric.append(NumericInput(column, fill, low, high))
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
            features.append(draft._fit_generated(generated, values, use_case))
        features += [CategoryCode(source.column, source.categories) for source in categorical
                     if plan.codes(source.column)]
        return cls(numeric, categorical, time, draft.entity, features, plan, label)

    def _fit_generated(self, generated: Mapping, values: Values, use_case: UseCase) -> Feature:
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
            # Every amount column the use case declares, not only those these windows sum: the history seeds the
            # online store once per definition, and a retrained version's windows may sum another of them.
            amounts = sorted({*use_case.features.amount_columns, *(o[2] for o in outputs if o[0] == "sum")})
            history = EntityHistory.fit(values[self.entity], values[self.time.column],
                                        {a: values[a] for a in amounts}, self.entity, self.time.column)
            return EntityFeatures(use_case.entity_definition, history, outputs)
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

    def _frame_values(self, frame: pd.DataFrame, columns: Sequence[str], checked: bool = False
                      ) -> dict[str, np.ndarray]:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise FeatureError(f"missing column(s) {missing}")
        values = {}
        for column in columns:
            if column in self._fills:
                values[column] = _numeric_values(frame[column], column, self._fills[column])
            elif self.time is not None and column == self.time.column:
                values[column] = _seconds(frame[column], self.time)
            elif checked:  # the contract stripped the text and made a blank missing already
                values[column] = frame[column].to_numpy(dtype=object, na_value=None)
            else:
                values[column] = _text_values(frame[column])
        return values

    def _record_values(self, record: Mapping[str, Any], columns: Optional[Sequence[str]] = None
                       ) -> dict[str, np.ndarray]:
        fills = self._fills
        values = {}
        for column in self.input_columns if columns is None else columns:
            try:
                value = record[column]
            except KeyError:
                raise FeatureError(f"missing column {column!r}") from None
            if column in fills:
                if _is_blank(value):
                    number = fills[column]
                else:
                    try:
                        number = number_from_text(value) if isinstance(value, str) else float(value)
                    except (TypeError, ValueError):
                        number = math.nan
                    if math.isnan(number):
                        raise FeatureError(f"column {column!r}: {value!r} is not a number")
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

    def record_values(self, records: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None
                      ) -> dict[str, np.ndarray]:
        """The parsed, imputed `columns` (default: the input columns) of a batch of records {column: value}, as
        `transform_record` parses one; a missing column or a bad value raises FeatureError naming it."""
        columns = self.input_columns if columns is None else columns
        if len(records) == 1:  # a served request's one row: nothing to join
            return self._record_values(records[0], columns)
        time = self.time.column if self.time is not None and self.time.column in columns else None
        others = [column for column in columns if column != time]
        parsed = [self._record_values(record, others) for record in records]
        values = {column: np.concatenate([v[column] for v in parsed]) for column in others}
        if time is not None:  # parsed once for the batch: one record at a time took 1 ms a row (an events push)
            try:
                raw = [record[time] for record in records]
            except KeyError:
                raise FeatureError(f"missing column {time!r}") from None
            values[time] = _seconds(pd.Series([None if _is_blank(value) else value for value in raw], dtype=object),
                                    self.time)
        return {column: values[column] for column in columns}

    def transform_values(self, values: Values, rows: int) -> np.ndarray:
        """Transform parsed records (`record_values`): row i equals `transform_record(records[i])`, and entity
        features read their history once for the whole batch."""
        return self._assemble(values, rows, self.features)

    def out_of_profile(self, values: Values) -> dict[tuple[str, str], int]:
        """How many rows of parsed records (`record_values`) fall outside what training saw, by (column, reason):
        below_training_min or above_training_max for a number, unseen_category for a category outside the
        training vocabulary. Missing values are imputed, not counted: the values have their fill in place of a
        blank, so a fill outside the training range (a constant `impute`) is not counted either."""
        found = {}
        for source in self.numeric:
            x = values.get(source.column)
            if x is not None and source.low is not None:
                below, above = x < source.low, x > source.high
                if not source.low <= source.fill <= source.high:
                    below, above = below & (x != source.fill), above & (x != source.fill)
                found[(source.column, "below_training_min")] = int(np.count_nonzero(below))
                found[(source.column, "above_training_max")] = int(np.count_nonzero(above))
        for source in self.categorical:
            text = values.get(source.column)
            if text is not None:
                # A set lookup per value (parsed text is a str, or None when missing): a pandas Series, or even
                # pd.notna, per column cost more than a served row's whole prediction.
                known = source.known
                found[(source.column, "unseen_category")] = sum(
                    1 for value in text if value is not None and value not in known)
        return {key: count for key, count in found.items() if count}

    @property
    def profiled_columns(self) -> list[str]:
        """The input columns `out_of_profile` looks at: the numbers and the categories."""
        return [i.column for i in self.numeric] + [i.column for i in self.categorical]

    def frame_values(self, frame: pd.DataFrame, checked: bool = False) -> dict[str, np.ndarray]:
        """A frame's input and profiled columns parsed once, for `transform_values` and
        `columns_out_of_profile` (batch scoring reads each chunk once for both). `checked`: the frame is
        what the contract kept (`apply_contract(...).kept`), whose text is stripped, blanks missing, so
        it is taken as it is instead of being stripped a second time."""
        columns = list(dict.fromkeys([*self.input_columns, *self.profiled_columns]))
        return self._frame_values(frame, columns, checked)

    def columns_out_of_profile(self, values: Values) -> dict[str, int]:
        """Per profiled column of parsed rows (`frame_values`), how many fall outside the training profile
        (`out_of_profile`, all reasons together): what a batch run reports."""
        counts = dict.fromkeys(self.profiled_columns, 0)
        for (column, _), count in self.out_of_profile(values).items():
            counts[column] += count
        return counts

    # ---- entity features online

    @property
    def entity_features(self) -> list[EntityFeatures]:
        return [f for f in self.features if isinstance(f, EntityFeatures)]

    @property
    def event_columns(self) -> list[str]:
        """The columns an event carries: the entity, the time and the amount columns of the entity features (every
        one the use case declares, summed by these windows or not)."""
        return list(dict.fromkeys(column for f in self.entity_features for column in f.event_columns))

    def online(self, store: OnlineStore, rows_are_events: bool = True) -> FeatureSet:
        """This FeatureSet with its entity features reading `store` (under each definition's name) instead of
        the history fitted at training: the same code and the same version, with fresh entity state. The rows
        being transformed are events too, as served rows are, unless `rows_are_events` is False: the store holds
        them already (batch scoring puts its whole input in first)."""
        features = [f.reading(store, rows_are_events) if isinstance(f, EntityFeatures) else f for f in self.features]
        return FeatureSet(self.numeric, self.categorical, self.time, self.entity, features, self.plan, self.label)

    def seed(self, store: OnlineStore) -> dict[str, bool]:
        """Write the fitted entity history into `store`, once per definition: {definition: written now}.

        From then on the store is the entities' record (served and pushed events): a retrained version's
        history, which overlaps what the store already holds, is not added again."""
        return {f.name: store.seed(f.name, SEED_SOURCE, f.history.as_events()) for f in self.entity_features}

    def check_store(self, store: OnlineStore) -> None:
        """Raise IncompatibleEvents when the events `store` holds for a definition lack an amount that this set's
        windows sum, looking at the stored events of up to STORE_CHECK_ENTITIES entities of the fitted history:
        a store seeded by a version whose events kept only the amounts its own windows summed. Read anyway, every
        request about a known entity would fail."""
        for feature in self.entity_features:
            if not feature.summed:
                continue
            keys = sorted(feature.history.events)[:STORE_CHECK_ENTITIES]
            stored = store.events_many(feature.name, keys) if keys else {}
            lacking = missing_amounts([event for events in stored.values() for event in events], feature.summed)
            if lacking:
                raise IncompatibleEvents(store.url, feature.name, lacking)

    def entity_events(self, values: Values) -> dict[str, dict[str, list[Event]]]:
        """The events parsed records (`record_values`) are, for the online store: {definition: {entity: events}}."""
        return {f.name: f.events(values) for f in self.entity_features}

    def with_history(self, frame: pd.DataFrame) -> FeatureSet:
        """This FeatureSet with each entity history refitted on `frame` (e.g. the whole log), everything else
        as fitted: the offline computation an online store must match, point in time by construction."""
        features = []
        for feature in self.features:
            if isinstance(feature, EntityFeatures):
                history = feature.history
                values = self._frame_values(frame, [history.entity, history.time, *history.amounts])
                feature = EntityFeatures(feature.name, EntityHistory.fit(
                    values[history.entity], values[history.time], {a: values[a] for a in history.amounts},
                    history.entity, history.time), feature.outputs)
            features.append(feature)
        return FeatureSet(self.numeric, self.categorical, self.time, self.entity, features, self.plan, self.label)

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
            "features": [feature_to_dict(f) for f in self.features],
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
        if document.get("format") == PREVIOUS_FORMAT:
            document = _upgraded(document)
        if document.get("format") != FORMAT:
            raise FeatureError(f"not a FeatureSet document (format {document.get('format')!r}, expected {FORMAT!r})")
        inputs = document["inputs"]
        return cls(
            [NumericInput(**i) for i in inputs["numeric"]],
            [CategoricalInput(i["column"], tuple(i["categories"])) for i in inputs["categorical"]],
            TimeInput(**inputs["time"]) if inputs["time"] else None,
            inputs["entity"],
            [feature_from_dict(f) for f in document["features"]],
            FeaturePlan.from_dict(document["plan"]),
            document["label"],
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _upgraded(document: dict) -> dict:
    """A v2 document as v3: entity histories' running sums (with a leading 0) become each event's amount, and
    an entity feature without a definition name takes its entity column's. Numbers' training ranges stay
    unknown (no out-of-profile counts for them)."""
    features = []
    for feature in document["features"]:
        if feature["kind"] == "entity":
            history = feature["history"]
            events = {key: {"time": entry["time"], **{name: np.diff(entry[name]).tolist()
                                                      for name in history["amounts"]}}
                      for key, entry in history["events"].items()}
            feature = {**feature, "name": feature.get("name", history["entity"]),
                       "history": {**history, "events": events}}
        features.append(feature)
    return {**document, "format": FORMAT, "features": features}


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


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )
