"""Decisions from scores: what a class or segment is called, what decisions cost, whether gates pass,
and per-group decision thresholds (a fairness mitigation) as data, with the groups they apply to.

What the model server needs of the bias step, without fairlearn: a row's group for a
sensitive attribute (its value, or its band in the use case's `fairness.bands`), the
fitted rule per group, and its decision. By default a group's rule is one threshold:
positive when the score reaches it, so within a group a higher score never gets a worse
decision, and the answer can name the threshold that decided. With `mitigation.randomized`
the rule is fairlearn ThresholdOptimizer's: a row of group g is positive with probability
p0 * [s op0 t0] + p1 * [s op1 t1] (mixed with a constant for equalized odds); the draw
comes from a hash of the row's encoded features, so the same row always gets the same
decision, in evaluation and in serving, but two rows with one score may not. The rules are
fitted in mitigation.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from flowline.contract import number_from_text, numbers_from_text
from flowline.use_case import ColumnSpec, CostSpec, GateSpec, UseCase

MISSING_GROUP = "missing"


def rule_name(randomized: bool) -> str:
    """How answers and reports name a mitigation's decision rule."""
    return "randomised per-group rule" if randomized else "per-group thresholds"


def _label(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING_GROUP
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))  # 1, 1.0 and np.int64(1) are one group, whichever way the column was read
    return str(value)


def _labels(values: pd.Series) -> list[str]:
    """`_label` of each value, computed once per distinct value (a batch has many rows and few groups). Equal
    values always get one label (1, 1.0 and True are all "1"), so the cache changes no answer."""
    cache: dict = {}
    out = []
    for value in values:
        try:
            label = cache[value]
        except KeyError:
            label = cache[value] = _label(value)
        except TypeError:  # an unhashable value
            label = _label(value)
        out.append(label)
    return out


def band_label(value: float, edges: list[float]) -> str:
    """The band of `value` among increasing `edges`: "<e0", "[e0, e1)", ..., ">=e_last"."""
    position = int(np.searchsorted(edges, value, side="right"))
    if position == 0:
        return f"<{edges[0]:g}"
    if position == len(edges):
        return f">={edges[-1]:g}"
    return f"[{edges[position - 1]:g}, {edges[position]:g})"


def sensitive_groups(frame: pd.DataFrame, attribute: str, use_case: UseCase) -> pd.Series:
    """Each row's group for `attribute`, as text: its value, or its band when the use case bands it."""
    if attribute not in frame.columns:
        raise KeyError(f"sensitive attribute {attribute!r} is not a column of the rows")
    edges = use_case.fairness.bands.get(attribute)
    values = _as_contract_reads(frame[attribute], use_case.columns.get(attribute))
    if edges is None:
        return pd.Series(_labels(values), index=frame.index, dtype=object)
    numbers = numbers_from_text(values)
    return pd.Series([MISSING_GROUP if np.isnan(v) else band_label(v, edges) for v in numbers],
                     index=frame.index, dtype=object)


def _as_contract_reads(values: pd.Series, spec: Optional[ColumnSpec]) -> pd.Series:
    """Text in served records as ingest reads the column ("1.0" and " 1" are the number 1, " Female " is
    "Female", a blank is missing), so a row falls in the same group whether it was served or read from a table;
    values the contract already parsed pass unchanged."""
    if values.dtype != object:
        return values
    if spec is not None and spec.is_numeric:
        return values.map(lambda v: number_from_text(v) if isinstance(v, str) else v)
    return values.map(lambda v: (v.strip() or None) if isinstance(v, str) else v)


def group_key(frame: pd.DataFrame, attributes: tuple[str, ...], use_case: UseCase) -> pd.Series:
    """The intersection of several attributes' groups, as "a=x|b=y"."""
    parts = [attribute + "=" + sensitive_groups(frame, attribute, use_case) for attribute in attributes]
    key = parts[0]
    for part in parts[1:]:
        key = key + "|" + part
    return key


def row_draws(x: np.ndarray) -> np.ndarray:
    """One number in [0, 1) per row, from the sha256 of its encoded features: fixed for a given row."""
    rows = np.ascontiguousarray(x, dtype=np.float64)
    digests = [hashlib.sha256(row.tobytes()).digest()[:8] for row in rows]
    return np.array([int.from_bytes(d, "little") for d in digests], dtype=np.float64) / 2.0 ** 64


@dataclass(frozen=True)
class GroupThresholds:
    """Per-group decision rules as data: per group key, its threshold (`{"threshold": t}`) or, when
    `randomized`, fairlearn's randomised rule.

    Rows of a group without a rule (unseen, or too small to fit) get the single `threshold`.
    """

    attributes: tuple[str, ...]
    constraint: str
    threshold: float
    groups: dict[str, dict[str, float | str]]
    randomized: bool = False

    def to_dict(self) -> dict:
        return {"attributes": list(self.attributes), "constraint": self.constraint, "threshold": self.threshold,
                "randomized": self.randomized, "groups": self.groups}

    @classmethod
    def from_dict(cls, document: dict) -> GroupThresholds:
        # Packages written before deterministic thresholds hold only fairlearn's randomised rule, unflagged.
        return cls(tuple(document["attributes"]), document["constraint"], float(document["threshold"]),
                   dict(document["groups"]), bool(document.get("randomized", True)))

    def group_thresholds(self) -> dict[str, float]:
        """Each group key's threshold (deterministic rules only)."""
        return {key: float(rule["threshold"]) for key, rule in self.groups.items()}

    def row_thresholds(self, rows: pd.DataFrame, use_case: UseCase) -> np.ndarray:
        """The threshold that decides each row: its group's, else the single threshold (deterministic rules)."""
        if self.randomized:
            raise ValueError("a randomized rule has no threshold per row: its decisions are drawn")
        keys = group_key(rows, self.attributes, use_case).to_numpy()
        out = np.full(len(rows), self.threshold, dtype=float)
        for key, threshold in self.group_thresholds().items():
            out[keys == key] = threshold
        return out

    def positive_probability(self, scores: np.ndarray, keys: pd.Series) -> np.ndarray:
        """Each row's chance of a positive decision under its group's randomised rule."""
        out = (scores >= self.threshold).astype(float)
        keys = keys.to_numpy()
        for key, rule in self.groups.items():
            rows = keys == key
            if not rows.any():
                continue
            s = scores[rows]
            chance = (rule["p0"] * _compare(s, rule["operator0"], rule["threshold0"])
                      + rule["p1"] * _compare(s, rule["operator1"], rule["threshold1"]))
            out[rows] = rule["p_ignore"] * rule["prediction_constant"] + (1 - rule["p_ignore"]) * chance
        return out

    def decide_with_draws(self, scores: np.ndarray, rows: pd.DataFrame, use_case: UseCase,
                          draws: Optional[np.ndarray]) -> np.ndarray:
        """Decisions (True: positive); `draws` (in [0, 1), one per row) are read by a randomized rule only."""
        if not self.randomized:
            # In float32, as answers report scores and thresholds: a reported tie is always a positive.
            return np.asarray(scores, np.float32) >= self.row_thresholds(rows, use_case).astype(np.float32)
        return draws < self.positive_probability(scores, group_key(rows, self.attributes, use_case))

    def decide(self, scores: np.ndarray, rows: pd.DataFrame, x: np.ndarray, use_case: UseCase) -> np.ndarray:
        """The served decisions (True: positive) for raw `rows` with encoded features `x` and `scores`."""
        return self.decide_with_draws(scores, rows, use_case, row_draws(x) if self.randomized else None)


def _compare(scores: np.ndarray, operator: str, threshold: float) -> np.ndarray:
    return (scores > threshold if operator == ">" else scores < threshold).astype(float)


def mitigation_of(evaluation: dict) -> GroupThresholds | None:
    """The package's fairness mitigation, when the bias step applied one."""
    document = evaluation.get("fairness", {}).get("mitigation")
    return GroupThresholds.from_dict(document) if document else None


def above_every(highest: float) -> float:
    """The lowest threshold that decides every score up to `highest` negative, in float32 as served as well as in
    float64: float32's next value above `highest`. (float64's next value rounds back to `highest` in float32, so
    the top row was served positive where evaluation had flagged nobody.)"""
    return float(np.nextafter(np.float32(highest), np.float32(np.inf)))  # above `highest` however it rounded


def outcome_cost(y: np.ndarray, predicted: np.ndarray, costs: CostSpec) -> float:
    """The total cost of the decisions `predicted` (True: flagged positive) for labels `y`."""
    return float(costs.false_negative * np.sum(~predicted & (y == 1)) + costs.false_positive
                 * np.sum(predicted & (y == 0)) + costs.true_positive * np.sum(predicted & (y == 1)))


def decision_metrics(y: np.ndarray, predicted: np.ndarray, costs: CostSpec) -> dict[str, float]:
    """What decisions `predicted` (True: flagged positive) achieve on labels `y`."""
    tp = float(np.sum(predicted & (y == 1)))
    fp = float(np.sum(predicted & (y == 0)))
    fn = float(np.sum(~predicted & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "accuracy": float(np.mean(predicted == (y == 1))),
        "expected_cost_per_1000": 1000 * outcome_cost(y, predicted, costs) / len(y),
    }


def decile_of(predictions: np.ndarray, edges) -> np.ndarray:
    """Deciles 1..10 of predictions against the nine decile edges."""
    return 1 + np.searchsorted(np.asarray(edges), predictions, side="right")


def segment_names(predictions: np.ndarray, edges, segments: dict[str, int]) -> list[str]:
    """Each prediction's segment: the one with the highest lowest-decile at or below its decile."""
    by_start = sorted(segments.items(), key=lambda item: item[1])
    starts = np.array([start for _, start in by_start])
    names = [name for name, _ in by_start]
    return [names[i] for i in np.searchsorted(starts, decile_of(predictions, edges), side="right") - 1]


def gate_decisions(metrics: dict[str, float], gates: dict[str, GateSpec]) -> dict[str, dict]:
    """Each gate with the measured value, its bounds and whether it passed."""
    decisions = {}
    for name, gate in gates.items():
        value = metrics[name]
        passed = (gate.min is None or value >= gate.min) and (gate.max is None or value <= gate.max)
        decisions[name] = {"value": value, "min": gate.min, "max": gate.max, "passed": bool(passed)}
    return decisions


def class_names(use_case: UseCase) -> list[str]:
    """Names of encoded classes 0 and 1, for the confusion matrix."""
    others = [v for v in use_case.label.values if v != use_case.label.positive]
    negative = others[0] if len(others) == 1 else f"not {use_case.label.positive}"
    return [negative, use_case.label.positive]
