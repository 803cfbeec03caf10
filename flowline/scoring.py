"""Scores and decisions of one verified model package, in process: what the model server answers, and
what batch scoring writes, for the same rows.

A `Scorer` holds a package's version, use case, FeatureSet, model, evaluation and any fairness
mitigation, and takes the package's decisions: one cost-optimal threshold (binary), or the per-group
thresholds of the mitigation its bias step applied (flowline/decisions.py), or a segment per prediction
(regression with segments). The model server's `LoadedPackage` is a Scorer with the request checkers
added, so the two cannot disagree.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import pandas as pd

from flowline.contract import ContractError, apply_contract
from flowline.decisions import GroupThresholds, class_names, mitigation_of, rule_name, segment_names
from flowline.features.feature_set import FeatureSet
from flowline.models.ensemble import Ensemble
from flowline.package.format import Package
from flowline.package.remote import download_package
from flowline.quarantine import REASON_COLUMN, ROW_COLUMN
from flowline.storage import is_s3
from flowline.use_case import UseCase

GROUP_CACHE_SIZE = 4096  # distinct attribute values remembered per package (a bound, not a tuning knob)
Rows = Union[List[Mapping[str, Any]], pd.DataFrame]  # records as a request carries them, or a batch's frame


@dataclass(frozen=True)
class Scorer:
    """A verified package's model and decision rule; see the module docstring."""

    version: str
    created_at: float
    use_case: UseCase
    feature_set: FeatureSet
    model: Ensemble
    evaluation: dict
    mitigation: Optional[GroupThresholds]
    # Per distinct values of the mitigation's attributes, their group's threshold (see `_record_thresholds`).
    _group_thresholds: Dict[tuple, float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __repr__(self) -> str:  # not the whole use case, FeatureSet and model (37 KB for churn) in a notebook cell
        rule = "per-group thresholds" if self.mitigation is not None else "one threshold"
        families = " + ".join(dict.fromkeys(self.model.families))
        return f"Scorer({self.use_case.name} {self.version}, {self.use_case.task}: {families}, {rule})"

    @classmethod
    def open(cls, path: str | Path) -> Scorer:
        """Verify first; only then read anything (model files can run code when loaded). A package at
        s3://bucket/prefix is downloaded first, and refused unless every file matches its manifest."""
        if is_s3(str(path)):
            path = download_package(str(path))
        packaged = Package.open(path)  # read from its private copy of what was verified
        return Scorer(
            version=packaged.version, created_at=packaged.built_at,
            use_case=packaged.use_case, feature_set=packaged.feature_set, model=packaged.model,
            evaluation=packaged.evaluation, mitigation=mitigation_of(packaged.evaluation),
        )

    def checked(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame's rows typed by the use case's contract, as the server and batch scoring check them.
        Raises ContractError naming the first rows it refuses and why: in process, a row the server would
        answer with a 400 gets no score either (batch scoring quarantines such rows instead). As in a request,
        the columns checked are those the model reads, and the id columns the frame has."""
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frame: expected a pandas DataFrame of raw columns, got {type(frame).__name__} "
                            "(pd.DataFrame(records) makes one of a list of records)")
        ids = [name for name in self.use_case.id_columns if name in frame.columns]
        read = {*self.feature_set.input_columns, *ids}
        use_case = self.use_case.model_copy(update={
            "columns": {name: spec for name, spec in self.use_case.columns.items() if name in read},
            "id_columns": ids})
        result = apply_contract(frame, use_case, to_score=True)
        refused = result.quarantined
        if len(refused):
            first = [f"row {row}: {reason}" for row, reason in zip(refused[ROW_COLUMN].head(3),
                                                                   refused[REASON_COLUMN].head(3))]
            raise ContractError(f"{len(refused)} of {len(frame)} row(s) break the contract of use case "
                                f"{self.use_case.name!r}: {'; '.join(first)}")
        return result.kept

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores for a frame of raw columns, in process: what the server answers for the same rows (FP32).
        Raises ContractError where the contract refuses a row (`checked`)."""
        return self.model.predict(self.feature_set.transform(self.checked(frame))).astype(np.float32)

    def ids_of(self, records: Optional[List[Mapping[str, Any]]]) -> Dict[str, list]:
        """The id columns the records carry, each with its value per row (None where a row left it out)."""
        if not records:
            return {}
        return {column: [record.get(column) for record in records] for column in self.use_case.id_columns
                if any(column in record for record in records)}

    @property
    def threshold(self) -> Optional[float]:
        """The cost-optimal decision threshold (binary tasks), as evaluate chose it."""
        return self.evaluation.get("threshold")

    @property
    def is_binary(self) -> bool:
        return self.use_case.task == "binary"

    def decide_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Binary decisions for a frame of raw columns, in process: what the server answers for the same rows.
        Raises ContractError where the contract refuses a row (`checked`)."""
        rows = self.checked(frame)
        x = self.feature_set.transform(rows)
        return self.decide(self.model.predict(x), x, frame.to_dict("records"))

    def decide(self, scores: np.ndarray, x: np.ndarray, records: Rows) -> np.ndarray:
        """Binary decisions: the per-group thresholds of a fairness mitigation, else the single threshold.
        `records`: the rows' raw values (the mitigation reads its sensitive attributes), or a frame of them."""
        if self.mitigation is None:  # in float32, as the answer reports both: a reported tie is a positive
            return np.asarray(scores, np.float32) >= np.float32(self.threshold)
        return self.mitigation.decide(scores, self._attribute_rows(records), x, self.use_case)

    def decisions(self, scores: np.ndarray, x: np.ndarray, records: Rows) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """`decide` and `row_thresholds` at once, reading the rows' groups once: a deterministic rule's decision
        is `score >= threshold` in float32, as `decide` takes it."""
        thresholds = self.row_thresholds(len(scores), records)
        if thresholds is None:  # a randomised rule: drawn, no threshold per row
            return self.decide(scores, x, records), None
        return np.asarray(scores, np.float32) >= thresholds, thresholds

    def row_thresholds(self, count: int, records: Rows) -> Optional[np.ndarray]:
        """The threshold that decided each of `count` rows (its group's); None for a randomised rule."""
        if self.mitigation is None:
            return np.full(count, self.threshold, dtype=np.float32)
        if self.mitigation.randomized:
            return None
        if isinstance(records, pd.DataFrame):
            return self.mitigation.row_thresholds(self._attribute_rows(records), self.use_case).astype(np.float32)
        return self._record_thresholds(records)

    def _record_thresholds(self, records: List[Mapping[str, Any]]) -> np.ndarray:
        """Each record's threshold, as a one-row frame of it gets it, computed once per distinct values of the
        attributes: a served batch has many rows and few groups, and a frame per batch cost more than the model."""
        attributes = self.mitigation.attributes
        out = np.empty(len(records), dtype=np.float32)
        for index, record in enumerate(records):
            values = tuple(record.get(attribute) for attribute in attributes)
            try:
                out[index] = self._group_thresholds[values]
                continue
            except (KeyError, TypeError):  # not seen yet, or unhashable
                pass
            threshold = self.mitigation.row_thresholds(self._attribute_rows([record]), self.use_case)[0]
            out[index] = threshold
            if len(self._group_thresholds) < GROUP_CACHE_SIZE:
                with contextlib.suppress(TypeError):
                    self._group_thresholds[values] = threshold
        return out

    @property
    def value_rule(self) -> Optional[str]:
        """What a customer-rows (CLV) package's prediction is, as the answers name it; None for other packages."""
        log = self.use_case.transaction_log
        if log is None:
            return None
        spec = log.transactions
        return (f"the expected net {spec.amount_column} over the {spec.horizon_days} days after as_of, floored at 0 "
                "(a mean: many customers spend nothing)")

    @property
    def decision_rule(self) -> str:
        """How the decisions are taken, as the answers name it."""
        if self.mitigation is None:
            return "single threshold"
        return rule_name(self.mitigation.randomized)

    def _attribute_rows(self, records: Rows) -> pd.DataFrame:
        if isinstance(records, pd.DataFrame):
            return records[list(self.mitigation.attributes)]
        return pd.DataFrame.from_records(records, columns=list(self.mitigation.attributes))

    def labels(self, positive: np.ndarray) -> list[str]:
        """The decision as label values, named as in evaluate's confusion matrix."""
        negative, positive_name = class_names(self.use_case)
        return [positive_name if flag else negative for flag in positive]

    @property
    def has_segments(self) -> bool:
        return bool(self.evaluation.get("segments"))

    def segments(self, predictions: np.ndarray) -> list[str]:
        """Regression with segments: each prediction's segment, by its decile among evaluate's test rows."""
        return segment_names(predictions, self.evaluation["deciles"]["edges"], self.evaluation["segments"])
