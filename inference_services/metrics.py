"""flowline's Prometheus metrics, served on /metrics beside KServe's own.

With `flowline serve --workers N` (N > 1) every worker records into prometheus_client's multiprocess
files ($PROMETHEUS_MULTIPROC_DIR, set by the parent before the workers import this module) and /metrics
answers with their sum (`multiprocess_registry`). The served packages' description is not recorded there
but collected from the answering worker (`ServedPackages`): every worker serves the same versions, and a
replaced version's series must disappear, which a multiprocess gauge cannot do. Nor are the process_*
metrics of prometheus_client's default registry, which describe the answering process only: every
worker's are read from /proc by its pid and labelled `worker` (`WorkerProcesses`). The container's memory is
read from its cgroup at each scrape (`ContainerMemory`).
"""

from __future__ import annotations

import gc
import re
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from flowline.ab_testing import LATENCY_BUCKETS

PREDICTIONS = Counter(
    "flowline_predictions", "Predictions served, by decision (binary) or 'value' (regression).",
    ["model_name", "model_version", "decision"],
)
LATENCY = Histogram(
    "flowline_request_latency_seconds", "Time in the model per request: checks, features and prediction, per model version.",
    ["model_name", "model_version"],
    buckets=LATENCY_BUCKETS,  # the canary analysis counts each arm's answers at them
)
REQUEST_SECONDS = Histogram(
    "flowline_http_request_duration_seconds", "Time from a predict or infer request's headers reaching the server to "
    "its answer starting: what a client waits, less the network, including the wait for the body, behind other "
    "requests and for a batch; per model (model_name empty for a name the server does not serve).", ["model_name"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PREDICTION_ERRORS = Counter(
    "flowline_prediction_errors", "Requests a model version refused or failed to answer, by exception: with "
    "flowline_request_latency_seconds_count (the answered ones), the canary analysis's error rate per version.",
    ["model_name", "model_version", "error"],
)
PREDICTION_LOG_ERRORS = Counter(
    "flowline_prediction_log_errors", "Answers the prediction log could not record (a full or unwritable disk): the "
    "answer is still given, and the log keeps whole lines only.", ["model_name"],
)
BATCH_REQUESTS = Histogram(
    "flowline_batch_requests", "Requests scored together in one transform and predict (adaptive batching), per model.",
    ["model_name"], buckets=(1, 2, 4, 8, 16, 32, 64),
)
INVALID_INPUTS = Counter(
    "flowline_invalid_inputs", "Requests refused as the client's fault (400; 413 for a body above the limit), by reason.",
    ["model_name", "reason"],
)
HTTP_REQUESTS = Counter(
    "flowline_http_requests", "Requests to a model's predict, explain and infer routes, by HTTP status and the "
    "version that answered (under a canary split, the arm the request went to; model_name empty for a name the "
    "server does not serve).",
    ["model_name", "model_version", "code"],
)
OUT_OF_PROFILE = Counter(
    "flowline_out_of_profile_rows", "Rows answered with a value outside what the training split saw, by column and "
    "reason (below_training_min, above_training_max, unseen_category): within the contract, beyond the profile.",
    ["model_name", "column", "reason"],
)
ENTITY_EVENTS = Counter(
    "flowline_entity_events", "Events appended to the online store, by source: served (answered rows) or pushed "
    "(the events endpoint); repeated: pushed again under a key already written, so not appended.",
    ["model_name", "source"],
)
ONLINE_STORE_RESEEDED = Counter(
    "flowline_online_store_reseeded", "Times the online store was found without a definition's history and seeded "
    "with the training history again: the events answered or pushed since it was first seeded were lost.",
    ["model_name", "definition"],
)
MODEL_RELOADS = Counter("flowline_model_reloads", "Package reloads, loaded or refused.", ["model_name", "result"])
# cgroup v1 reports "no limit" as a number near 2**63.
NO_LIMIT_ABOVE = 2**60
# The model's name (group 1 or 2) and, in a versioned v2 URL, the version it names (group 3).
MODEL_ROUTE = re.compile(r"^/v1/models/([^/:]+):(?:predict|explain)$|^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")


def model_request(scope) -> Optional[re.Match]:
    """MODEL_ROUTE's match of an HTTP request's path when it is a predict, explain or infer request (a POST); None
    for any other, such as a GET of a predict URL, which is a 404 and no model request to count."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    return MODEL_ROUTE.match(scope["path"])


VersionsOf = Callable[[str], Optional[Sequence[str]]]  # a model name's served versions, champion first; None: not served


class Answering:
    """Which package version took a request, as the model notes it (`note_version`) once it has chosen the arm:
    read by whichever counts the request's answer. An object rather than the context variable's value, so that
    the note reaches the counter from a copied context (a thread, another task) as well."""

    __slots__ = ("version",)

    def __init__(self) -> None:
        self.version: Optional[str] = None


_ANSWERING: ContextVar[Optional[Answering]] = ContextVar("flowline_answering", default=None)


def answering() -> Answering:
    """A new note for the request about to be handed on, in this context and those copied from it."""
    note = Answering()
    _ANSWERING.set(note)
    return note


def note_version(version: str) -> None:
    """Note the version that takes the request being handled (nothing when no counter asked: a test's call)."""
    note = _ANSWERING.get()
    if note is not None:
        note.version = version


class ServedPackages:
    """The package versions each model name serves, exported as flowline_model_info, _created_timestamp_seconds,
    _quality and _gates_passed: a collector of this process's view, so that a replaced version's series go."""

    def __init__(self) -> None:
        # (model, version) -> (use case, task, created at, gates passed, quality metrics); replaced whole on
        # change, so that a scrape iterates over a stable dict while a reload thread publishes.
        self._served: dict[tuple[str, str], tuple[str, str, float, bool, Mapping[str, float]]] = {}

    def publish(self, model: str, version: str, use_case: str, task: str, created_at: float, gates_passed: bool,
                quality: Mapping[str, float]) -> None:
        self._served = {**self._served, (model, version): (use_case, task, created_at, gates_passed, dict(quality))}

    def remove(self, model: str, version: str) -> None:
        self._served = {key: value for key, value in self._served.items() if key != (model, version)}

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("flowline_model_info", "The package a model name serves (always 1).",
                                 labels=["model_name", "model_version", "use_case", "task"])
        created = GaugeMetricFamily("flowline_model_created_timestamp_seconds", "When the served package was built.",
                                    labels=["model_name", "model_version"])
        quality = GaugeMetricFamily("flowline_model_quality", "Test-split metrics of the served package.",
                                    labels=["model_name", "model_version", "metric"])
        gates = GaugeMetricFamily("flowline_model_gates_passed",
                                  "1 when the served package passed its gates (quality and fairness).",
                                  labels=["model_name", "model_version"])
        for (model, version), (use_case, task, created_at, gates_passed, values) in self._served.items():
            info.add_metric([model, version, use_case, task], 1)
            created.add_metric([model, version], created_at)
            gates.add_metric([model, version], 1 if gates_passed else 0)
            for metric, value in values.items():
                quality.add_metric([model, version, metric], value)
        yield from (info, created, quality, gates)


SERVED_PACKAGES = ServedPackages()
REGISTRY.register(SERVED_PACKAGES)


class WorkerProcesses:
    """process_* (memory, CPU, file descriptors, start time) of every worker of the server, one series each,
    labelled `worker` by its index: which keeps its series when the container restarts, as the alert on
    restarts needs. `pids` maps each worker's index to its pid, as the workers reported them."""

    def __init__(self, pids: Callable[[], Mapping[int, int]]) -> None:
        self.pids = pids

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for worker, pid in sorted(self.pids().items()):
            for family in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "worker": str(worker)}, sample.value)
        yield from families.values()


def multiprocess_registry(pids: Callable[[], Mapping[int, int]]) -> CollectorRegistry:
    """What /metrics exports with several workers: every worker's counters, histograms and gauges summed from
    $PROMETHEUS_MULTIPROC_DIR, the served packages as this worker serves them, the container's memory, and every
    worker's process_* (`pids`: worker index -> pid)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(SERVED_PACKAGES)
    registry.register(CONTAINER_MEMORY)
    registry.register(WorkerProcesses(pids))
    return registry


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


GC_COLLECTIONS = Counter(
    "flowline_gc_collections", "The model server's Python garbage collections, by generation, summed over its "
    "workers (python_gc_* describe one process, and are not exported with several workers).", ["generation"],
)
GC_PAUSE = Counter(
    "flowline_gc_pause_seconds", "Seconds the model server's workers spent in garbage collection, by generation: "
    "a request waits out a collection that starts during it.", ["generation"],
)


GC_FLUSH_S = 1.0  # how often a worker's collection counts move into the counters


def count_garbage_collections() -> None:
    """Count this process's garbage collections and the seconds they took (GC_COLLECTIONS, GC_PAUSE).

    The collector's callback only adds to plain numbers: a collection can start while this thread holds a
    metric's lock (prometheus_client's multiprocess values share one), and a callback taking that lock again
    would wait forever. A thread moves the sums into the counters every GC_FLUSH_S seconds."""
    counts, seconds = [0, 0, 0], [0.0, 0.0, 0.0]
    started = time.perf_counter()

    def observe(phase: str, info: dict) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
        else:
            counts[info["generation"]] += 1
            seconds[info["generation"]] += time.perf_counter() - started

    collections = [GC_COLLECTIONS.labels(str(generation)) for generation in range(3)]
    pauses = [GC_PAUSE.labels(str(generation)) for generation in range(3)]

    def flush() -> None:
        moved_counts, moved_seconds = [0, 0, 0], [0.0, 0.0, 0.0]
        while True:
            time.sleep(GC_FLUSH_S)
            for generation in range(3):
                count, spent = counts[generation], seconds[generation]
                collections[generation].inc(count - moved_counts[generation])
                pauses[generation].inc(spent - moved_seconds[generation])
                moved_counts[generation], moved_seconds[generation] = count, spent

    gc.callbacks.append(observe)
    threading.Thread(target=flush, name="gc-counts", daemon=True).start()


class ContainerMemory:
    """The container's memory as its cgroup counts it, read at each scrape: flowline_memory_limit_bytes (0 when
    it has none) and flowline_memory_working_set_bytes, its usage less the inactive file cache, which is what the
    kubelet evicts on and close to what the OOM killer sees. Unlike the workers' resident sizes summed, it counts
    the pages they share (libraries, the package read before the fork) once. Nothing where no cgroup file is."""

    def __init__(self, v2: Path = Path("/sys/fs/cgroup"), v1: Path = Path("/sys/fs/cgroup/memory")) -> None:
        # (limit, usage, the stat file's inactive file cache), cgroup v2 first
        self.layouts = ((v2 / "memory.max", v2 / "memory.current", v2 / "memory.stat", "inactive_file"),
                        (v1 / "memory.limit_in_bytes", v1 / "memory.usage_in_bytes", v1 / "memory.stat",
                         "total_inactive_file"))

    def read(self) -> Optional[tuple[int, int]]:
        """(limit, working set) in bytes; None without a cgroup."""
        for limit_file, usage_file, stat_file, inactive_key in self.layouts:
            try:
                limit, usage = limit_file.read_text().strip(), int(usage_file.read_text())
                stat = dict(line.split() for line in stat_file.read_text().splitlines() if line.count(" ") == 1)
            except (OSError, ValueError):
                continue
            limit_bytes = int(limit) if limit.isdigit() and int(limit) < NO_LIMIT_ABOVE else 0
            return limit_bytes, max(usage - int(stat.get(inactive_key, 0)), 0)
        return None

    def collect(self) -> Iterator[Metric]:
        read = self.read()
        if read is None:
            return
        yield GaugeMetricFamily("flowline_memory_limit_bytes", "The container's memory limit (cgroup); 0 when it "
                                "has none.", value=read[0])
        yield GaugeMetricFamily("flowline_memory_working_set_bytes", "The container's memory usage less its "
                                "inactive file cache (cgroup), as the kubelet counts it.", value=read[1])


CONTAINER_MEMORY = ContainerMemory()
REGISTRY.register(CONTAINER_MEMORY)


ARRIVED = "flowline.arrived"  # the ASGI scope's key for when the outermost app took the request (perf_counter)


def arrived(scope: dict) -> float:
    """When the request of `scope` reached the server (`ARRIVED`, noted by the outermost app, body_limit.py), else
    now."""
    return scope.get(ARRIVED) or time.perf_counter()


class RequestCounter:
    """ASGI middleware counting model requests by status, including the 500s no handler sees, under the version
    that took them (`count_request`). With `worker` (several workers), each answer says which worker gave it in
    `x-flowline-worker` (its pid)."""

    def __init__(self, app, versions_of: VersionsOf, worker: Optional[str] = None) -> None:
        self.app = app
        self.versions_of = versions_of
        self.worker_header = [(b"x-flowline-worker", worker.encode())] if worker else []

    async def __call__(self, scope, receive, send) -> None:
        match = model_request(scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        status, started, seconds = 500, arrived(scope), None

        async def send_and_note_status(message) -> None:
            nonlocal status, seconds
            if message["type"] == "http.response.start":
                status, seconds = message["status"], time.perf_counter() - started
                if self.worker_header:
                    message = {**message, "headers": [*message.get("headers", ()), *self.worker_header]}
            await send(message)

        note = answering()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            count_request(match, status, self.versions_of, note.version,
                          time.perf_counter() - started if seconds is None else seconds)


def counted_version(versions: Sequence[str], requested: Optional[str], answered: Optional[str]) -> str:
    """The version a request to a model serving `versions` (champion first) is counted under: the one that took
    it, as the model noted it (`answered`); refused before that, the one a versioned URL names (`requested`) if it
    is served, else the champion's. A canary's answers and refusals are its own, not the champion's."""
    return answered or (requested if requested in versions else versions[0])


def count_request(route: re.Match, status: int, versions_of: VersionsOf, answered: Optional[str],
                  seconds: float) -> None:
    """Count an answer to a model request (`route`: model_request's match of its path), `seconds` after the request
    came, under `counted_version`. An explanation's time is not a prediction's: KServe's request_explain_seconds
    has it."""
    name = route.group(1) or route.group(2)
    versions = versions_of(name)
    seconds_taken = None if route.group(0).endswith(":explain") else seconds
    if versions is None:  # a name the server does not serve is counted without it: callers cannot add series at will
        count_answer("", "", status, seconds_taken)
        return
    count_answer(name, counted_version(versions, route.group(3), answered), status, seconds_taken)


def count_answer(model: str, version: str, status: int, seconds: Optional[float]) -> None:
    """An answer to a model request, in flowline_http_requests_total and (a prediction's, `seconds` after the
    request came) flowline_http_request_duration_seconds."""
    HTTP_REQUESTS.labels(model, version, str(status)).inc()
    if seconds is not None:
        REQUEST_SECONDS.labels(model).observe(seconds)


# The drift monitor's metrics; model_name is the monitored model's name, so they join the server's. With
# several workers each keeps its own window, so the window's gauges are one series per live worker (a pid
# label): the rules and dashboards take the max or min by model_name, and match p-value and threshold per worker.
WINDOW_GAUGES = "liveall"
DRIFT_EVENTS = Counter("flowline_drift_events", "Inference-request events used (checked, their rows added to the "
                       "window); those refused are flowline_drift_invalid_events.", ["model_name"])
DRIFT_INVALID_EVENTS = Counter("flowline_drift_invalid_events", "Events refused, by reason.", ["model_name", "reason"])
DRIFT_WINDOW_SIZE = Gauge("flowline_drift_window_size", "Rows per drift test (calibrated).", ["model_name"],
                          multiprocess_mode=WINDOW_GAUGES)
DRIFT_WINDOW_FILL = Gauge("flowline_drift_window_fill", "Rows in the current window.", ["model_name"],
                          multiprocess_mode=WINDOW_GAUGES)
DRIFT_THRESHOLD = Gauge("flowline_drift_threshold", "A feature's p-value below this drifts its window: the "
                        "calibrated threshold over the number of features (Bonferroni).", ["model_name"],
                        multiprocess_mode=WINDOW_GAUGES)
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
