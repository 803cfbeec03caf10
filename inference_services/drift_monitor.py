"""The drift monitor: a kserve.Model fed with KServe payload-logger CloudEvents.

    flowline serve --drift-monitor [NAME=]PACKAGE_DIR [--host H] [--port N] [--on-drift local|kfp ...]

KServe's logger sends each inference request the model receives as a CloudEvent
(type org.kubeflow.serving.inference.request) to a Knative Broker, and a Trigger
delivers it here, to /v1/models/{name}:predict. The monitor checks the records against
the package's data contract (id columns, when a request carries them, are checked as the
model server checks them, then ignored), encodes them like the pipeline's drift step, and collects
them into windows of the calibrated size; each full window is tested with the
package's detector. It exports Prometheus gauges (p-value per feature, the drift flag,
the window size and fill) and answers with a CloudEvent (KServe encodes the reply).

It also counts pipeline run outcomes (type dev.flowline.pipeline.run.finished, data
{"use_case", "status", "run_id"}) so that failed runs can raise an alert.

A malformed event (unknown type, a body of the wrong shape, values outside the contract or
float32's range) is a 400 naming the field, as on the model server, and is counted.

With an `on_drift` action, a drifted window calls it with the monitored use case, the package
version and the p-values, and its answer joins the test's. `flowline serve --on-drift local|kfp`
passes the retraining action (pipelines/retraining.py); the monitor knows nothing of how it works.

The window lives in memory: one replica per monitored model. With `flowline serve --workers N` each
worker keeps its own windows of the events it receives. The kernel hands each connection to a worker,
so a worker's window is a sample of the traffic, a random one as long as the senders spread their
events over many connections alike; each window still has the calibrated size, so the false-alarm rate
and the power hold, but a window fills N times slower. Retraining needs one worker (its cooldown is per
process): `flowline serve` refuses `--on-drift` with more.

The payload logger's events reach `receive` through the lean route of event_route.py; KServe's v1 route
(`predict`) takes the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
from kserve import Model

from flowline.decisions import mitigation_of
from flowline.events import PIPELINE_RUN_EVENT, REQUEST_EVENT, RUN_STATUSES
from flowline.drift import DETECTOR_DIR, Calibration, DriftEncoder, load_calibration, load_detector
from flowline.package.format import Package, refuse_other_use_case
from flowline.inference_services import metrics
from flowline.inference_services.payloads import payload_records
from flowline.inference_services.request_checks import BadRequest, RecordChecker, describe, request_checker
from flowline.use_case import NAME_PATTERN, UseCase

# What to do about a drifted window: (monitored use case, package version, p-value per feature) -> what happened.
OnDrift = Callable[[str, str, Dict[str, float]], dict]


@dataclass(frozen=True)
class DriftPackage:
    """What one package version gives the monitor: contract, encoder, detector, calibration."""

    version: str
    built_at: float  # the package's build time, in seconds since the epoch
    use_case: UseCase
    checker: RecordChecker
    encoder: DriftEncoder
    detector: object
    calibration: Calibration

    @classmethod
    def load(cls, path: str | Path) -> DriftPackage:
        """Verify first; the detector is then rebuilt from data (a .npy and a JSON config), never unpickled."""
        package = Package.open(path)  # verified, then read from its private copy of what was verified
        mitigation = mitigation_of(package.evaluation)
        return cls(
            version=package.version, built_at=package.built_at, use_case=package.use_case,
            checker=request_checker(package.use_case, package.feature_set.input_columns,  # the payload logger
                                    mitigation.attributes if mitigation else ()),  # sends requests as they came
            encoder=DriftEncoder(package.feature_set),
            detector=load_detector(package.drift_dir / DETECTOR_DIR),
            calibration=load_calibration(package.drift_dir),
        )

    @property
    def feature_threshold(self) -> float:
        """A feature's p-value below this drifts its window: the calibrated threshold, which bounds the window's
        false alarms, over the number of features (Bonferroni, as the detector decides)."""
        return self.calibration.threshold / len(self.calibration.features)


class DriftMonitor(Model):
    def __init__(self, name: str, package_path: str | Path, on_drift: Optional[OnDrift] = None) -> None:
        super().__init__(name)
        self.package_path = str(package_path)
        self.on_drift = on_drift
        self.package: Optional[DriftPackage] = None
        self.window: list[Mapping[str, Any]] = []  # the checked records of the window being filled, encoded when full
        self._last_success = 0.0  # the newest successful run this process knows of (`_use`, `_pipeline_run`)

    @property
    def monitored(self) -> str:
        return self.package.use_case.name

    def load(self) -> bool:
        self._use(DriftPackage.load(self.package_path))
        self.ready = True
        return self.ready

    def reload(self, package_path: str | Path | None = None) -> str:
        """Monitor a new package version of the same use case; the partial window of the old one is dropped."""
        path = str(package_path or self.package_path)
        new = DriftPackage.load(path)
        refuse_other_use_case(path, self.name, new.use_case.name, self.package.use_case.name)
        self._use(new)
        self.package_path = path
        self.ready = True  # back in service after an unload
        return self.package.version

    def _use(self, package: DriftPackage) -> None:
        name = package.use_case.name
        self.package, self.window = package, []
        self._events, self._fill = metrics.DRIFT_EVENTS.labels(name), metrics.DRIFT_WINDOW_FILL.labels(name)
        metrics.DRIFT_WINDOW_SIZE.labels(name).set(package.calibration.window_size)
        metrics.DRIFT_THRESHOLD.labels(name).set(package.feature_threshold)
        self._fill.set(0)
        # Every outcome's series from 0, so that increase() in the alert rules sees the first one too.
        for result in ("drift", "no_drift"):
            metrics.DRIFT_TESTS.labels(name, result)
        for status in RUN_STATUSES:
            metrics.PIPELINE_RUNS.labels(name, status)
        # A served package was built by a run that went on to deploy it: the newest success a monitor knows of
        # before any run's event reaches it. Without it a restarted monitor (a promotion moves it to a new pod)
        # exported no success at all, and FlowlinePipelineNoSuccessfulRun resolved, or never fired.
        self._last_success = max(self._last_success, package.built_at)
        metrics.PIPELINE_LAST_RUN.labels(name, "succeeded").set(self._last_success)

    def predict(self, payload: Dict, headers: Optional[Dict[str, str]] = None) -> Dict:
        """KServe's v1 predict route calls this: the CloudEvent's type is its ce-type header (binary mode, as KServe's
        payload logger sends; a structured-mode event is refused saying so)."""
        return self.receive((headers or {}).get("ce-type"), payload)

    def receive(self, event_type: Optional[str], payload: Any) -> Dict:
        """One event (its type and data): a request's records join the window, and each window that fills is
        tested; a pipeline run's outcome is counted. A malformed event is a BadRequest, counted by reason."""
        try:
            if event_type is None and isinstance(payload, dict) and {"specversion", "type", "data"} <= payload.keys():
                raise BadRequest("unsupported_event", "a structured-mode CloudEvent: send binary mode (the ce-* "
                                                      "headers and the data as the body), as KServe's payload logger "
                                                      "does")
            if event_type == PIPELINE_RUN_EVENT:
                return self._pipeline_run(payload)
            if event_type != REQUEST_EVENT:
                raise BadRequest("unsupported_event", f"ce-type: expected {REQUEST_EVENT!r} or {PIPELINE_RUN_EVENT!r}, "
                                                      f"got {describe(event_type)}")
            records = payload_records(payload, self.package.checker)
        except BadRequest as error:
            metrics.DRIFT_INVALID_EVENTS.labels(self.package.use_case.name, error.kind).inc()
            raise
        self._events.inc()
        self.window.extend(records)
        tests = []
        size = self.package.calibration.window_size
        while len(self.window) >= size:
            full, self.window = self.window[:size], self.window[size:]
            test = self._test(self.package.encoder.encode_records(full))
            if test["is_drift"] and self.on_drift is not None:
                test["retraining"] = self.on_drift(self.monitored, self.package.version, test["p_values"])
            tests.append(test)
        self._fill.set(len(self.window))
        return {"model_name": self.name, "monitored_model": self.monitored, "model_version": self.package.version,
                "rows": len(records), "window_fill": len(self.window), "window_size": size, "tests": tests}

    def explain(self, payload: Dict, headers: Optional[Dict[str, str]] = None) -> Dict:
        """A client's mistake, not a missing feature of the server: 400 rather than KServe's 501."""
        raise BadRequest("unsupported_verb", "explain: the drift monitor takes CloudEvents at :predict")

    def _test(self, window: np.ndarray) -> dict:
        result = self.package.detector.predict(window, return_p_val=True)["data"]
        drifted = bool(result["is_drift"])
        model = self.monitored
        p_values = dict(zip(self.package.encoder.columns, map(float, result["p_val"])))
        for feature, p_value in p_values.items():
            metrics.DRIFT_P_VALUE.labels(model, feature).set(p_value)
        metrics.DRIFT_DETECTED.labels(model).set(1 if drifted else 0)
        metrics.DRIFT_TESTS.labels(model, "drift" if drifted else "no_drift").inc()
        metrics.DRIFT_LAST_TEST.labels(model).set(time.time())
        return {"is_drift": drifted, "threshold": self.package.feature_threshold, "p_values": p_values}

    def _pipeline_run(self, payload: Dict) -> Dict:
        if not isinstance(payload, dict) or not (isinstance(payload.get("use_case"), str)
                                                 and NAME_PATTERN.fullmatch(payload["use_case"])):
            raise BadRequest("malformed_request", "data.use_case: expected a use case's name (lower-case letters, "
                                                  "digits and '-')")
        if payload["use_case"] != self.monitored:  # its Trigger sends this monitor its own use case's runs only
            raise BadRequest("malformed_request", f"data.use_case: this monitor counts runs of {self.monitored!r}")
        if payload.get("status") not in RUN_STATUSES:
            raise BadRequest("malformed_request", f"data.status: expected one of {list(RUN_STATUSES)}")
        metrics.PIPELINE_RUNS.labels(payload["use_case"], payload["status"]).inc()
        now = time.time()
        if payload["status"] == "succeeded":
            self._last_success = now
        metrics.PIPELINE_LAST_RUN.labels(payload["use_case"], payload["status"]).set(now)
        return {"use_case": payload["use_case"], "status": payload["status"], "recorded": True}

