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
