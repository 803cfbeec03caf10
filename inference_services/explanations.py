"""A model server's explain answer: SHAP contributions per raw column of each row, and the answer predict gives
that row, so that an explanation says what it explains.

Each member of the package's model explains itself additively (exact TreeSHAP for the tree families, exact linear
SHAP, an approximate permutation estimate for the MLP), and a blend weights them as it weights their margins:
contributions + base value (+ floor_adjustment, for a regression clipped at its floor) = margin. An explain costs
far more a row than a predict, so a request carries at most `--max-explain-rows` rows (`check_explain_rows`).
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from flowline.inference_services.batching import require_finite, transform
from flowline.inference_services.request_checks import V1_ROW, BadRequest, ids_sent


def check_explain_rows(payload: Any, max_explain_rows: int) -> None:
    """A 400 for an explain request of more rows than `max_explain_rows`, before it waits for its turn (the rest of
    the body is checked as predict checks it)."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if isinstance(instances, list) and len(instances) > max_explain_rows:
        raise BadRequest("batch_too_large", f"instances: {len(instances)} records, above the explain limit of "
                                            f"{max_explain_rows} (--max-explain-rows): send them in smaller requests")


def explained(package, records: list) -> Dict[str, Any]:
    """The explanations of `records` (checked) by `package` (a model server's LoadedPackage): per row its ids as
    sent, the answer predict gives it, the base value, the margin, any floor adjustment, the contributions per raw
    column, and the entity features it was given (read from the online store, when the package has them)."""
    matrix, _ = transform(package, records, V1_ROW)
    per_column, base, floor_adjustment = package.model.column_contributions(matrix, package.owners)
    margins = package.model.margin(matrix)
    require_finite(np.column_stack([per_column, base, margins]), V1_ROW)
    floored = package.model.floor is not None  # a regression clipped at a floor: the clip is its own term
    columns, ids = package.feature_set.input_columns, package.use_case.id_columns
    entity = [i for i, name in enumerate(package.feature_set.feature_names)
              if name in {n for f in package.feature_set.entity_features for n in f.names}]
    names = [package.feature_set.feature_names[i] for i in entity]
    answered = answers_explained(package, margins, records)
    return {
        **({"decision_rule": package.decision_rule} if package.is_binary else {}),
        "explanations": [
            {
                **ids_sent(record, ids),
                **served,
                "base_value": float(base_value),
                "margin": float(margin),
                **threshold_margin(served),
                **({"floor_adjustment": float(adjustment)} if floored else {}),
                "contributions": dict(zip(columns, map(float, by_column))),
                **({"entity_features": dict(zip(names, map(float, row[entity])))} if entity else {}),
            }
            for record, served, base_value, by_column, margin, row, adjustment
            in zip(records, answered, base, per_column, margins, matrix, floor_adjustment)
        ],
    }


def threshold_margin(served: Dict[str, Any]) -> Dict[str, float]:
    """The threshold that decided the row, in the margin's units (its log-odds): a row is flagged when its margin
    reaches it. The base value is no such line (on card fraud -1.43, the threshold -3.24): contributions summing
    below zero do not mean "not flagged"."""
    threshold = served.get("threshold")
    if threshold is None or not 0 < threshold < 1:
        return {}
    return {"threshold_margin": float(np.log(threshold) - np.log1p(-threshold))}


def answers_explained(package, margins: np.ndarray, records: list) -> List[Dict[str, Any]]:
    """What predict answers for each explained row: the probability and, under a deterministic rule, the decision
    and the threshold that took it (binary); the prediction and any segment (regression). A randomised rule's
    decision is a draw, which a second draw here could contradict: its explanations give the probability alone."""
    values = package.model.from_margin(margins)  # float64, as predict's: answered in float32
    scores = values.astype(np.float32)
    if not package.is_binary:
        segments = package.segments(values) if package.has_segments else None
        return [{"prediction": float(value), **({"segment": segments[i]} if segments is not None else {})}
                for i, value in enumerate(scores)]
    thresholds = package.row_thresholds(len(scores), records)
    if thresholds is None:
        return [{"probability": float(score)} for score in scores]
    decisions = package.labels(scores >= thresholds)
    return [{"probability": float(score), "decision": decision, "threshold": float(threshold)}
            for score, decision, threshold in zip(scores, decisions, thresholds)]
