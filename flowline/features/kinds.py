"""The feature kinds: what a FeatureSet computes from the parsed input columns.

Each kind names the inputs it reads and the output columns it writes, and holds its
fitted state as plain data (saved as JSON by the FeatureSet, never pickled). The raw
inputs are parsed and imputed once (NumericInput, CategoricalInput, TimeInput); every
kind then reads the parsed arrays, so a frame and a single record go through the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flowline.online_store import IncompatibleEvents

if TYPE_CHECKING:
    from flowline.online_store import OnlineStore

MAX_VOCABULARY = 1000  # target and frequency encodings remember at most this many categories
TARGET_SMOOTHING = 10.0  # pseudo-rows at the prior: rare categories lean towards the overall rate
CALENDAR_PARTS = ("month", "day_of_week", "day_of_month", "hour")
NO_EVENT = -1.0  # recency when an entity has no earlier event
Values = Mapping[str, np.ndarray]


class FeatureError(ValueError):
    """A row or record cannot be transformed: a missing column or a value of the wrong type."""


@dataclass(frozen=True)
class NumericInput:
    """A number column: missing values get `fill`; `low` and `high` are the training split's range."""

    column: str
    fill: float
    low: Optional[float] = None
    high: Optional[float] = None


@dataclass(frozen=True)
class CategoricalInput:
    """Values are matched as stripped text, as ingest stores them; blank counts as missing."""

    column: str
    categories: tuple[str, ...]  # the training vocabulary, most frequent first

    @cached_property
    def known(self) -> frozenset[str]:
        return frozenset(self.categories)


@dataclass(frozen=True)
class TimeInput:
    """A datetime column (parsed with `format`, as ingest parses it) or a numeric time, in seconds."""

    column: str
    is_datetime: bool
    format: Optional[str] = None


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

    `trees` (xgboost, forest, lightgbm): numbers, generated features and the codes, with XGBoost
    feature types ("c" for a code, LightGBM's categorical_feature); `dense` (linear, mlp): everything
    but the codes.
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


Event = tuple[float, dict[str, float]]  # (time in seconds, {amount column: value}), as the online store holds it
Running = tuple[np.ndarray, dict[str, np.ndarray]]  # sorted times; per amount, running sums with a leading 0


def canonical_order(times: np.ndarray, amounts: Mapping[str, np.ndarray]) -> np.ndarray:
    """The one order of an entity's events, offline and online: by time, then by amounts in column-name order
    (flowline.online_store.canonical's order), so equal events sum bit-identically however they arrived."""
    return np.lexsort([np.asarray(amounts[name]) for name in sorted(amounts, reverse=True)] + [np.asarray(times)])


def running_sums(times: np.ndarray, amounts: Mapping[str, np.ndarray]) -> Running:
    """One entity's events in canonical order, with running sums of each amount: what entity features read.

    The fitted history and the online store both go through here, so their sums are the same floats.
    """
    order = canonical_order(times, amounts)
    sums = {name: np.concatenate([[0.0], np.cumsum(np.asarray(values, dtype=np.float64)[order])])
            for name, values in amounts.items()}
    return np.asarray(times, dtype=np.float64)[order], sums


def _same_amount(known: float, other: float) -> bool:
    """The same amount, within a billionth of it (NaN being NaN's)."""
    if known != known or other != other:
        return known != known and other != other
    return abs(known - other) <= 1e-9 * max(1.0, abs(known))


def missing_amounts(events: Sequence[Event], amounts: Sequence[str]) -> list[str]:
    """The `amounts` some of `events` do not carry."""
    return [name for name in amounts if any(name not in a for _, a in events)]


@dataclass(frozen=True)
class EntityHistory:
    """Per entity, its training events: times and amounts, in canonical order (`canonical_order`).

    The state behind recency and rolling-window features: a row at time t sees only the
    entity's events strictly before t, so training rows never see themselves or later rows.
    Fitted and saved in the package, it is the history as of training; online, the entity
    features read an online store instead (`EntityFeatures.reading`), seeded from it.
    """

    entity: str
    time: str
    amounts: tuple[str, ...]
    events: dict[str, dict[str, list[float]]]  # entity -> {"time": [...], amount: [...]}

    @classmethod
    def fit(cls, keys: np.ndarray, times: np.ndarray, amounts: dict[str, np.ndarray], entity: str, time: str) -> EntityHistory:
        frame = pd.DataFrame({"key": keys, "time": times, **amounts}).dropna(subset=["key", "time"])
        events = {}
        for key, group in frame.groupby("key", sort=True):
            order = canonical_order(group["time"].to_numpy(), {name: group[name].to_numpy() for name in amounts})
            events[str(key)] = {"time": group["time"].to_numpy()[order].tolist(),
                                **{name: group[name].to_numpy(dtype=np.float64)[order].tolist() for name in amounts}}
        return cls(entity=entity, time=time, amounts=tuple(amounts), events=events)

    @cached_property
    def _running(self) -> dict[str, Running]:
        return {key: running_sums(np.asarray(entry["time"]), {name: entry[name] for name in self.amounts})
                for key, entry in self.events.items()}

    def lookup(self, keys: Sequence[str], pending: Mapping[str, list[Event]]) -> dict[str, Running]:
        """The running sums of `keys` that have events: the fitted ones, with those of `pending` (the rows being
        transformed) at a time the history holds no event of their entity. The training rows are all in it,
        so their features are as fitted; rows after training (valid, test, batch scoring) see their entity's
        earlier rows among them, as a served row sees the rows served before it."""
        running = self._running
        found = {}
        for key in keys:
            fitted = self.events.get(key)
            new = self.new_events(key, pending.get(key, []))
            if new:
                times = [*(fitted["time"] if fitted else []), *(t for t, _ in new)]
                amounts = {name: [*(fitted[name] if fitted else []), *(a[name] for _, a in new)]
                           for name in self.amounts}
                found[key] = running_sums(np.asarray(times, dtype=np.float64), amounts)
            elif key in running:
                found[key] = running[key]
        return found

    @cached_property
    def _fitted(self) -> dict[str, dict[float, list[tuple[float, ...]]]]:
        """Per entity, the amounts of its fitted events at each time."""
        fitted: dict[str, dict[float, list[tuple[float, ...]]]] = {}
        for key, entry in self.events.items():
            at = fitted[key] = {}
            for index, time in enumerate(entry["time"]):
                at.setdefault(time, []).append(tuple(entry[name][index] for name in self.amounts))
        return fitted

    def new_events(self, key: str, events: Sequence[Event]) -> list[Event]:
        """Those of entity `key`'s `events` that its history does not hold: an event with a fitted event's time and
        amounts is that training event (a training row transformed again, a backtest), not a second one, once for
        each time the history holds it. Another event at the same time is new: known by the time alone, a test row
        at the instant of its card's training row was left out of evaluation and batch scoring, which the server,
        counting it, answered otherwise (the train/serve audit). Amounts match within a billionth, as a history
        saved as running sums (format v2) gives them back."""
        fitted = self._fitted.get(key, {})
        taken: dict[float, set[int]] = {}
        new = []
        for time, amounts in events:
            mine = tuple(amounts[name] for name in self.amounts)
            used = taken.setdefault(time, set())
            match = next((index for index, known in enumerate(fitted.get(time, ()))
                          if index not in used and all(map(_same_amount, known, mine))), None)
            if match is None:
                new.append((time, amounts))
            else:
                used.add(match)
        return new

    def as_events(self) -> dict[str, list[Event]]:
        """The fitted events per entity, as the online store takes them (to seed it)."""
        return {key: [(float(t), {name: float(entry[name][i]) for name in self.amounts})
                      for i, t in enumerate(entry["time"])] for key, entry in self.events.items()}


class StoreHistory:
    """An entity history read from an online store at transform time, under the definition's namespace.

    The rows being transformed are events too: they join what the store holds (a row never sees
    itself, being at its own time), so a batch of rows of one entity sees its own earlier rows,
    as the offline computation over the whole log does.
    """

    def __init__(self, store: "OnlineStore", namespace: str, amounts: tuple[str, ...], rows_are_events: bool = True
                 ) -> None:
        self.store, self.namespace, self.amounts = store, namespace, amounts  # `amounts`: those the windows sum
        self.rows_are_events = rows_are_events  # False: the store holds the rows being transformed already

    def lookup(self, keys: Sequence[str], pending: Mapping[str, list[Event]]) -> dict[str, Running]:
        """One store round trip for all `keys`; their running sums, with `pending` events added. A stored event
        without an amount the windows sum raises IncompatibleEvents (the store was written by a version that did
        not keep that column): the features cannot be computed, and a zero in its place would be a wrong answer. So
        does a store holding no seed of the definition (HistoryLost): it lost the history every entity would read."""
        stored = self.store.events_many(self.namespace, keys, seeded=True)  # HistoryLost: the store lost its data
        running = {}
        for key in keys:
            events = stored[key] + (pending.get(key, []) if self.rows_are_events else [])
            if not events:
                continue
            try:
                amounts = {name: np.array([a[name] for _, a in events], dtype=np.float64) for name in self.amounts}
            except KeyError:  # checked only when it fails: this is every request's path
                raise IncompatibleEvents(self.store.url, self.namespace,
                                         missing_amounts(stored[key], self.amounts)) from None
            running[key] = running_sums(np.array([t for t, _ in events], dtype=np.float64), amounts)
        return running


@dataclass(frozen=True)
class EntityFeatures:
    """Recency and rolling counts and sums of amounts per entity over windows (in seconds).

    `name` is the entity-feature definition (the use case's `entity_definition`): the online
    store's namespace. `outputs` lists what to compute: ("recency",), ("count", window) or
    ("sum", window, amount). `store`, when set (`reading`), is where the events come from at
    transform time instead of the fitted `history`; it is never saved.
    """

    kind: ClassVar[str] = "entity"
    name: str
    history: EntityHistory
    outputs: tuple[tuple, ...]
    store: Optional[StoreHistory] = field(default=None, compare=False)

    @property
    def summed(self) -> tuple[str, ...]:
        """The amount columns the windows sum."""
        return tuple(sorted({o[2] for o in self.outputs if o[0] == "sum"}))

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.history.entity, self.history.time, *self.summed)

    @property
    def event_columns(self) -> tuple[str, ...]:
        """The columns an event carries: the entity, the time and every amount the history keeps (the use case's
        amount_columns, whether or not these windows sum them, so that a later version's windows can)."""
        return (self.history.entity, self.history.time, *self.history.amounts)

    @property
    def names(self) -> list[str]:
        entity = self.history.entity
        names = {"recency": lambda o: f"recency({entity})",
                 "count": lambda o: f"count({entity}, {o[1]:g}s)",
                 "sum": lambda o: f"sum({o[2]} by {entity}, {o[1]:g}s)"}
        return [names[o[0]](o) for o in self.outputs]

    def reading(self, store: "OnlineStore", rows_are_events: bool = True) -> EntityFeatures:
        """The same features computed from the events `store` holds under this definition's name (with the rows
        being transformed as events too, unless the store holds them already: `rows_are_events` False)."""
        return replace(self, store=StoreHistory(store, self.name, self.summed, rows_are_events))

    def events(self, values: Values) -> dict[str, list[Event]]:
        """The events that rows are, per entity (rows without an entity or a time are none)."""
        keys, times = values[self.history.entity], values[self.history.time]
        amounts = [(name, values[name]) for name in self.history.amounts]
        events: dict[str, list[Event]] = {}
        for i, key in enumerate(keys):
            if key is not None and not np.isnan(times[i]):
                events.setdefault(key, []).append((float(times[i]), {name: float(v[i]) for name, v in amounts}))
        return events

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
        source = self.store or self.history
        for key, (history_times, sums) in source.lookup(list(rows_by_key), self.events(values)).items():
            rows = rows_by_key[key]
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
                    out[rows, j] = sums[output[2]][before] - sums[output[2]][start]
        return out


Feature = Union[Numeric, OneHot, TargetEncoding, Frequency, CategoryCode, Product, Ratio, Calendar, EntityFeatures]
FEATURE_KINDS = {kind.kind: kind for kind in (Numeric, OneHot, TargetEncoding, Frequency, CategoryCode, Product, Ratio,
                                               Calendar)}


def feature_to_dict(feature: Feature) -> dict:
    if isinstance(feature, EntityFeatures):
        return {"kind": feature.kind, "name": feature.name, "history": asdict(feature.history),
                "outputs": [list(o) for o in feature.outputs]}
    document = asdict(feature)
    return {"kind": feature.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in document.items()}}


def feature_from_dict(document: dict) -> Feature:
    fields = {k: v for k, v in document.items() if k != "kind"}
    if document["kind"] == "entity":
        history = fields["history"]
        return EntityFeatures(
            fields["name"],
            EntityHistory(history["entity"], history["time"], tuple(history["amounts"]), history["events"]),
            tuple(tuple(o) for o in fields["outputs"]),
        )
    kind = FEATURE_KINDS[document["kind"]]
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
