"""The feature plan: which encoding each categorical column gets, which numeric transforms and
generated features are used. Choices only, no fitted state; engineering.py chooses it on
validation and FeatureSet.fit fits it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import pandas as pd

from flowline.use_case import UseCase

MAX_CATEGORIES = 50  # one-hot keeps the most frequent categories
ONE_HOT_MAX_CARDINALITY = 15  # above this, target encoding is the default
ENCODINGS = ("one_hot", "target", "frequency")


@dataclass(frozen=True)
class FeaturePlan:
    """Choices only, no fitted state: small, JSON, and enough to refit the same FeatureSet.

    `generated` holds {"kind": "product", "left", "right"}, {"kind": "ratio", "numerator",
    "denominator"}, {"kind": "calendar"} and {"kind": "entity", "outputs": [...]}.
    """

    encodings: dict[str, str] = field(default_factory=dict)
    transforms: dict[str, str] = field(default_factory=dict)
    generated: tuple[dict, ...] = ()
    # Category codes for the tree families: True for every categorical column, or the columns that get one.
    native_categorical: bool | tuple[str, ...] = False

    def to_dict(self) -> dict:
        return {"encodings": dict(self.encodings), "transforms": dict(self.transforms),
                "generated": [dict(g) for g in self.generated],
                "native_categorical": (self.native_categorical if isinstance(self.native_categorical, bool)
                                       else list(self.native_categorical))}

    @classmethod
    def from_dict(cls, document: Mapping) -> FeaturePlan:
        generated = tuple({**g, **({"outputs": [list(o) for o in g["outputs"]]} if "outputs" in g else {})}
                          for g in document.get("generated", []))
        native = document.get("native_categorical", False)
        return cls(dict(document.get("encodings", {})), dict(document.get("transforms", {})), generated,
                   native if isinstance(native, bool) else tuple(native))

    def codes(self, column: str) -> bool:
        """Whether the tree families read `column`'s category code (a categorical column)."""
        native = self.native_categorical
        return native if isinstance(native, bool) else column in native

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
    families as `features.native_categorical` asks: every categorical column, none, or (auto) those with
    more categories than one-hot takes. Trees split few categories best on their indicators (online_shoppers,
    seeds 0-4: codes for its months and visitor types cost 0.0012 ROC-AUC) and many best natively, grouping
    them as the data asks, rather than on a target encoding (docs/benchmarks.md)."""
    encodings = {}
    for column in use_case.feature_columns:
        if not use_case.columns[column].is_numeric:
            encodings[column] = default_encoding(int(frame[column].nunique()))
    native = use_case.features.native_categorical
    if native == "auto":
        # None to code is False, as before auto, so that such a plan and its FeatureSet's version are unchanged.
        native = tuple(column for column, encoding in encodings.items() if encoding == "target") or False
    return FeaturePlan(encodings=encodings, native_categorical=native)
