"""flowline's Prometheus metrics, served on /metrics beside KServe's own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

PREDICTIONS = Counter(
    "flowline_predictions", "Predictions served, by decision (binary) or 'value' (regression).",
    ["model_name", "model_version", "decision"],
)
LATENCY = Histogram(
    "flowline_request_latency_seconds", "Time in the model per request: checks, features and prediction, per model version.",
    ["model_name", "model_version"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
PREDICTION_ERRORS = Counter(
    "flowline_prediction_errors", "Requests a model version refused or failed to answer, by exception: with "
    "flowline_request_latency_seconds_count (the answered ones), the canary analysis's error rate per version.",
    ["model_name", "model_version", "error"],
)
INVALID_INPUTS = Counter(
    "flowline_invalid_inputs", "Requests refused with 400, by reason.", ["model_name", "reason"],
)
HTTP_REQUESTS = Counter(
    "flowline_http_requests", "Requests to a model's predict, explain and infer routes, by HTTP status.",
    ["model_name", "model_version", "code"],
)
OUT_OF_PROFILE = Counter(
    "flowline_out_of_profile_rows", "Rows answered with a value outside what the training split saw, by column and "
    "reason (below_training_min, above_training_max, unseen_category): within the contract, beyond the profile.",
    ["model_name", "column", "reason"],
)
ENTITY_EVENTS = Counter(
    "flowline_entity_events", "Events appended to the online store, by source: served (answered rows) or pushed "
    "(the events endpoint).", ["model_name", "source"],
)
MODEL_INFO = Gauge("flowline_model_info", "The package a model name serves (always 1).",
                   ["model_name", "model_version", "use_case", "task"])
MODEL_CREATED = Gauge("flowline_model_created_timestamp_seconds", "When the served package was built.",
                      ["model_name", "model_version"])
MODEL_QUALITY = Gauge("flowline_model_quality", "Test-split metrics of the served package.",
                      ["model_name", "model_version", "metric"])
MODEL_GATES_PASSED = Gauge("flowline_model_gates_passed", "1 when the served package passed its quality gates.",
                           ["model_name", "model_version"])
MODEL_RELOADS = Counter("flowline_model_reloads", "Package reloads, loaded or refused.", ["model_name", "result"])
MEMORY_LIMIT = Gauge("flowline_memory_limit_bytes", "The container's memory limit (cgroup); 0 when it has none.")
# cgroup v2, then v1. v1 reports "no limit" as a number near 2**63.
CGROUP_MEMORY_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
NO_LIMIT_ABOVE = 2**60
MODEL_ROUTE = re.compile(r"^/v1/models/([^/:]+):(?:predict|explain)$|^/v2/models/([^/]+)/infer$")


def observe_predictions(
    model: str, version: str, rows: int, positive: Optional[np.ndarray], seconds: float
) -> None:
    """Count a request's answers: the served decisions (binary; `positive` per row), else values."""
    LATENCY.labels(model, version).observe(seconds)
    if positive is None:
        PREDICTIONS.labels(model, version, "value").inc(rows)
        return
    flagged = int(np.count_nonzero(positive))
    if flagged:
        PREDICTIONS.labels(model, version, "positive").inc(flagged)
    if flagged < rows:
        PREDICTIONS.labels(model, version, "negative").inc(rows - flagged)


def publish_memory_limit() -> None:
    """Export the container's memory limit, so one alert rule fits every overlay's limits."""
    for path in CGROUP_MEMORY_LIMITS:
        if path.is_file():
            text = path.read_text().strip()
            limit = int(text) if text.isdigit() and int(text) < NO_LIMIT_ABOVE else 0
            MEMORY_LIMIT.set(limit)
            return
    MEMORY_LIMIT.set(0)


class RequestCounter:
    """ASGI middleware counting model requests by status, including the 500s no handler sees."""

    def __init__(self, app, version_of: Callable[[str], str]) -> None:
        self.app = app
        self.version_of = version_of

    async def __call__(self, scope, receive, send) -> None:
        match = MODEL_ROUTE.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_note_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            name = match.group(1) or match.group(2)
            HTTP_REQUESTS.labels(name, self.version_of(name), str(status)).inc()


# The drift monitor's metrics; model_name is the monitored model's name, so they join the server's. With
# several workers each keeps its own window, so the window's gauges are one series per live worker (a pid
# label): the rules and dashboards take the max or min by model_name, and match p-value and threshold per worker.
WINDOW_GAUGES = "liveall"
DRIFT_EVENTS = Counter("flowline_drift_events", "Inference-request events received.", ["model_name"])
DRIFT_INVALID_EVENTS = Counter("flowline_drift_invalid_events", "Events refused, by reason.", ["model_name", "reason"])
DRIFT_WINDOW_SIZE = Gauge("flowline_drift_window_size", "Rows per drift test (calibrated).", ["model_name"],
                          multiprocess_mode=WINDOW_GAUGES)
DRIFT_WINDOW_FILL = Gauge("flowline_drift_window_fill", "Rows in the current window.", ["model_name"],
                          multiprocess_mode=WINDOW_GAUGES)
DRIFT_THRESHOLD = Gauge("flowline_drift_threshold", "Calibrated p-value threshold (Bonferroni-corrected).",
                        ["model_name"], multiprocess_mode=WINDOW_GAUGES)
DRIFT_P_VALUE = Gauge("flowline_drift_p_value", "p-value per raw feature in the last test.", ["model_name", "feature"],
                      multiprocess_mode=WINDOW_GAUGES)
DRIFT_DETECTED = Gauge("flowline_drift_detected", "1 when the last completed window drifted.", ["model_name"],
                       multiprocess_mode=WINDOW_GAUGES)
DRIFT_TESTS = Counter("flowline_drift_tests", "Completed windows, by result.", ["model_name", "result"])
DRIFT_LAST_TEST = Gauge("flowline_drift_last_test_timestamp_seconds", "When the last window was tested.",
                        ["model_name"], multiprocess_mode=WINDOW_GAUGES)
PIPELINE_RUNS = Counter("flowline_pipeline_runs", "Pipeline run outcomes reported as CloudEvents.", ["use_case", "status"])
PIPELINE_LAST_RUN = Gauge("flowline_pipeline_last_run_timestamp_seconds", "When a run last ended, by outcome.",
                          ["use_case", "status"], multiprocess_mode="max")  # whichever worker the event reached
