"""flowline's Prometheus metrics, served on /metrics beside KServe's own."""

from __future__ import annotations

from typing import Optional

import numpy as np
from prometheus_client import Counter, Histogram

PREDICTIONS = Counter(
    "flowline_predictions", "Predictions served, by decision (binary) or 'value' (regression).",
    ["model_name", "model_version", "decision"],
)
LATENCY = Histogram(
    "flowline_request_latency_seconds", "Time in the model per request: checks, features and prediction, per model version.",
    ["model_name", "model_version"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
INVALID_INPUTS = Counter(
    "flowline_invalid_inputs", "Requests refused with 400, by reason.", ["model_name", "reason"],
)


def observe_predictions(
    model: str, version: str, scores: np.ndarray, threshold: Optional[float], seconds: float
) -> None:
    LATENCY.labels(model, version).observe(seconds)
    if threshold is None:
        PREDICTIONS.labels(model, version, "value").inc(len(scores))
        return
    positive = int(np.count_nonzero(scores >= threshold))
    if positive:
        PREDICTIONS.labels(model, version, "positive").inc(positive)
    if positive < len(scores):
        PREDICTIONS.labels(model, version, "negative").inc(len(scores) - positive)
