"""The flowline runtime: a kserve.Model that serves a verified model package.

Raw records in, answers out, over KServe v1 (`instances` as records) and the Open
Inference Protocol v2 (one named tensor per raw column, or one FP32 matrix of encoded
features, with a raw tensor per sensitive attribute when the package has a fairness
mitigation). Both go through the package's FeatureSet, so serving transforms exactly as
training did. `explain` returns SHAP contributions per raw column (each member's own:
exact TreeSHAP for XGBoost, LightGBM, CatBoost and forests, exact linear SHAP, a permutation
estimate for the MLP) and the base value, for at most `max_explain_rows` rows a request. A
binary package decides with one threshold, or with the per-group thresholds of the fairness
mitigation its bias step applied
(flowline/decisions.py), exactly as evaluated; its requests must then carry the
mitigation's sensitive attributes (among the raw columns, or beside an encoded matrix).
Every binary answer carries, per row, the threshold that decided it, and names the rule
(`decision_rule`); a randomised rule (`fairness.mitigation.randomized`) has no threshold
per row, and says so.

A request may carry the use case's id columns (`id_columns`: in v1 records, or as v2 tensors beside
the raw columns or an encoded matrix). They are never features: each answer row repeats them as
sent, v2 as one output tensor per id column, and the prediction log writes them, so that outcomes
join by entity as well as by request id.

Entity features (`features.entity_column`) read an online store (`online_store`, a URL:
flowline/online_store.py) at request time, one lookup per request; when the use case owns its
entity-feature definition, each answered row is then appended as an event, and `push_events`
takes events the server did not answer (plain records or payload-logger CloudEvents). Answered
rows outside the training profile are counted per column and reason. A customer-rows package
(CLV) scores a customer by id alone from its transactions in the same store, and takes its new
transactions through `push_events` (customers_online.py).

The package-level scores and decisions are the core's `Scorer` (flowline/scoring.py), which batch scoring
uses too; `LoadedPackage` adds the request checkers. A package is loaded only after `verify()` passes. `reload()` swaps in a new version
atomically; a package that fails verification is refused and the running one keeps
serving.

An answer never carries NaN or infinity: values a float32 feature cannot hold, and rows whose
answer is not finite, are refused with a 400 naming the record.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, BinaryIO, Union

import numpy as np
from kserve import Model
from kserve.errors import ModelNotFound
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME, get_labels
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import to_np_dtype

from flowline.events import REQUEST_EVENT
from flowline.features.kinds import FeatureError
from flowline.online_store import (HistoryLost, IncompatibleEvents, OnlineStore, OnlineStoreError,
                                   OnlineStoreUnavailable, open_store, shown)
from flowline.inference_services import metrics
from flowline.inference_services import customers_online, explanations
from flowline.inference_services.batching import Batcher, Job, score_jobs, transform
from flowline.inference_services.options import (DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH, DEFAULT_MAX_BATCH_ROWS,
                                                 DEFAULT_MAX_EXPLAIN_ROWS)
from flowline.inference_services.payloads import payload_records, push_key
from flowline.inference_services.tensors import feature_matrix, tensor_records
from flowline.inference_services.request_checks import (MAX_ID_CHARACTERS, V1_ROW, V2_ROW, BadRequest,
                                                           RecordChecker, describe, ids_sent, request_checker)
from flowline.package.format import read_manifest, refuse_other_use_case
from flowline.storage import is_s3
from flowline.scoring import Scorer

log = logging.getLogger("flowline.serving")
# The attributes by which KServe takes a JSON body for a structured-mode CloudEvent (is_structured_cloudevent).
STRUCTURED_EVENT = ("specversion", "id", "source", "type", "time", "data")


@dataclass(frozen=True)
class LoadedPackage(Scorer):
    """A package's Scorer with what requests need: the checkers, and the owners of each encoded feature;
    replaced whole on reload."""

    checker: RecordChecker
    owners: np.ndarray  # (encoded features x raw columns): adds SHAP contributions up to the raw columns
    matrix_checker: RecordChecker  # what comes beside an encoded matrix: the mitigation's attributes, the ids
    store: Optional[OnlineStore] = None  # where entity features read events; set when the package has them
    writes_events: bool = False  # the use case owns its entity-feature definition: its served rows are events

    @classmethod
    def load(cls, path: str | Path, online_store: Optional[Callable[[], OnlineStore]] = None) -> LoadedPackage:
        """The package's Scorer (verified before anything is read; s3:// is downloaded), with the checkers.

        With `online_store` (opening the store) and entity features in the package, they read the store; the
        owner of the definition seeds it with the package's training history (once per definition)."""
        scorer = Scorer.open(path)
        scorer.model.set_threads(1)  # one row per request: threads cost more than they save
        use_case, feature_set, store, owner = scorer.use_case, scorer.feature_set, None, False
        if online_store is not None and feature_set.entity_features:
            store = online_store()
            owner = use_case.entity_definition == use_case.name
            if owner:
                feature_set.seed(store)
            feature_set.check_store(store)  # a store whose events lack an amount these windows sum: refused here
            feature_set = feature_set.online(store)
        attributes = scorer.mitigation.attributes if scorer.mitigation else ()
        ids = use_case.id_columns
        return cls(
            **{field.name: getattr(scorer, field.name) for field in fields(Scorer) if field.init and field.name != "feature_set"},
            feature_set=feature_set,
            checker=request_checker(use_case, feature_set.input_columns, attributes),
            owners=feature_set.owners,
            matrix_checker=RecordChecker(use_case, attributes, ids), store=store, writes_events=owner,
        )

    def input_types(self) -> List[Dict]:
        """The raw columns a request carries, with their v2 datatypes."""
        schema = self.use_case.columns
        return [{"name": c, "datatype": _datatype_of(schema[c].type), "shape": [-1]} for c in self.checker.columns]


def canary_takes(request_id: str, percent: int) -> bool:
    """Whether a request goes to the canary: a fixed share of request ids, the same id always the same way."""
    return int(hashlib.sha256(request_id.encode()).hexdigest()[:8], 16) % 100 < percent


class FlowlineModel(Model):
    """Serves one model package under a name; see the module docstring.

    With `canary_path`, a second package takes `canary_percent` of the requests, by
    request id (the v2 `id`, else the `x-request-id` header, else a new one), standing in
    locally for KServe's `canaryTrafficPercent`. With `prediction_log`, every request is
    appended there as a JSON line (`request_id`, `arm`, `version`, `rows`, `seconds`,
    `error`: null, or the error's kind for a refused one; `ids`: each id column the request
    carried, with its value per row) so that outcomes can be joined back by request id or
    by entity; answers carry both. With `online_store` (a URL, online_store.py), a customer-rows
    package (CLV) also scores customers by id alone, from their stored transactions (customers_online.py).
    """

    def __init__(self, name: str, package_path: str | Path, max_batch: int = DEFAULT_MAX_BATCH,
                 canary_path: str | Path | None = None, canary_percent: int = 0,
                 prediction_log: str | Path | None = None, online_store: str | None = None,
                 batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
                 max_explain_rows: int = DEFAULT_MAX_EXPLAIN_ROWS) -> None:
        super().__init__(name)
        if not 0 <= canary_percent <= 100:
            raise ValueError(f"canary_percent {canary_percent}: give 0 to 100")
        self.package_path = str(package_path)
        self.max_batch = max_batch
        self.max_explain_rows = max_explain_rows  # an explain costs up to 0.15 s a row (fraud-claims' CatBoost)
        self.package: Optional[LoadedPackage] = None
        self.canary_path = str(canary_path) if canary_path else None
        self.canary_percent = canary_percent
        self.canary: Optional[LoadedPackage] = None
        self.prediction_log = Path(prediction_log) if prediction_log else None
        self._log: Optional[BinaryIO] = None  # opened once, on load: not once per request
        self._log_failing = False  # warned once when the log stops recording, once when it records again
        self.online_store_url = online_store
        self._store: Optional[OnlineStore] = None  # opened once, when a package first needs it
        self._store_down = False  # a request found the online store out of reach: readiness pings it (store_reachable)
        # Off with a wait of 0; never for a package with entity features (its reads and writes keep their order).
        self.batcher = Batcher(self.score, batch_wait_ms / 1e3, max_batch_rows) if batch_wait_ms > 0 else None
        self._explaining = asyncio.Semaphore(1)  # explains run in a thread, one at a time (`explain`)

    def _online_store(self) -> OnlineStore:
        if self._store is None:
            self._store = open_store(self.online_store_url)
        return self._store

    def store_reachable(self) -> bool:
        """For readiness: false while the online store is out of reach, or holds no history of a definition read
        here. Costs nothing until a request finds it so (then each call pings it, until it answers again), but for
        a definition's owner, which looks for its seed marks on each call (one round trip): a store that lost its
        data is seeded again even while no request reaches the owner, as when a reader of the definition in the
        same pod has made it unready."""
        if self._store is None:
            return True
        try:
            if not self._store_down and all(self._store.is_seeded(name) for name in self._owned_definitions()):
                return True
            self._store.ping()
        except OnlineStoreUnavailable as error:
            self._store_failed(error)
            return False
        self._store_down = True  # the store answers: seed what it lost, unless a definition's owner is elsewhere
        self._store_up()
        return not self._store_down

    def _definitions_read(self) -> set[str]:
        """The entity-feature definitions a version served here reads."""
        return {feature.name for _, package in self._arms() for feature in package.feature_set.entity_features}

    def _owned_definitions(self) -> set[str]:
        """The entity-feature definitions whose owner is served here: its served rows are their events."""
        return {feature.name for _, package in self._arms() if package.writes_events
                for feature in package.feature_set.entity_features}

    def _store_failed(self, error: Exception) -> None:
        if isinstance(error, HistoryLost) and error.namespace not in self._definitions_read():
            return  # a CLV log the store lacks: only `flowline seed` restores it; requests carrying rows go on
        if isinstance(error, OnlineStoreUnavailable) and not isinstance(error, IncompatibleEvents) \
                and not self._store_down:
            log.warning("%s: %s; answering 503 and not ready until it answers again", self.name, error)
            self._store_down = True
            if isinstance(error, HistoryLost):  # the store answers, without the history: seed it again now
                self._store_up()

    def _store_up(self) -> None:
        """The store answers again. A Redis that restarted without its data has lost the training history too:
        the definition's owner seeds it again (a no-op where the store kept it: seeding is once per source). It
        stays down while a definition read here has no history: one whose owner is served elsewhere, until that
        owner seeds it."""
        if not self._store_down:
            return
        try:
            seeded = [name for _, package in self._arms() if package.writes_events
                      for name, wrote in package.feature_set.seed(package.store).items() if wrote]
            if any(not package.store.is_seeded(feature.name) for _, package in self._arms()
                   if package.store is not None for feature in package.feature_set.entity_features):
                return
        except OnlineStoreUnavailable:
            return
        self._store_down = False
        if not seeded:
            log.warning("%s: online store %s answers again", self.name, shown(self.online_store_url))
            return
        for name in seeded:
            metrics.ONLINE_STORE_RESEEDED.labels(self.name, name).inc()
        # An error, not a warning: entity features are served again, but without every event answered or pushed
        # since the store was first seeded (a Redis without persistence, or its volume lost).
        log.error("%s: online store %s answers again; it had lost its data: seeded %s with the training history "
                  "again, and the events answered or pushed since it was first seeded are lost (run Redis with "
                  "appendonly on a persistent volume, as kustomize/online-store does)", self.name,
                  shown(self.online_store_url), ", ".join(seeded))

    def _load_package(self, path: str) -> LoadedPackage:
        return LoadedPackage.load(path, self._online_store if self.online_store_url else None)

    def load(self) -> bool:
        self.package = self._load_package(self.package_path)
        publish_package(self.name, self.package)
        if self.canary_path:
            self.canary = self._load_package(self.canary_path)
            if self.canary.use_case.task != self.package.use_case.task:
                raise ValueError(f"canary {self.canary_path} is a {self.canary.use_case.task} model, the champion "
                                 f"a {self.package.use_case.task} one")
            publish_package(self.name, self.canary)
        if self.prediction_log:
            # Unbuffered, appending: each line is one write(2) at the file's end, so the lines of several
            # worker processes never interleave, whatever their length.
            self._log = open(self.prediction_log, "ab", buffering=0)
        self.ready = True
        return self.ready

    def _route(self, request_id: str, version: Optional[str] = None) -> tuple[str, LoadedPackage]:
        """The arm that answers: by the request id's share of the canary split, or the one whose package is
        `version` (a versioned v2 URL); ModelNotFound (404) for a version not served here. Noted for the counter
        of the request's answer (flowline_http_requests_total), which counts it under the arm's version."""
        if version is not None:
            for arm, package in self._arms():
                if package.version == version:
                    metrics.note_version(version)
                    return arm, package
            raise ModelNotFound(f"{self.name} version {version}")
        arm, package = ("canary", self.canary) if self.canary is not None and canary_takes(
            request_id, self.canary_percent) else ("champion", self.package)
        metrics.note_version(package.version)
        return arm, package

    def _arms(self) -> list[tuple[str, LoadedPackage]]:
        """The arms serving under this name, each with its package: the champion, then any canary."""
        return [(arm, package) for arm, package in (("champion", self.package), ("canary", self.canary))
                if package is not None]

    def versions(self) -> list[str]:
        """The package versions served under this name: the champion's, then the canary's."""
        return [package.version for _, package in self._arms()]

    def _log_prediction(self, job: Job, rows: int, seconds: float, error: Optional[str] = None,
                        ids: Optional[Dict[str, list]] = None) -> None:
        line = {"at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "request_id": job.request_id,
                "model": self.name, "arm": job.arm, "version": job.package.version, "rows": rows,
                "seconds": round(seconds, 6), "error": error, "ids": ids or {},
                "answers": answered(job) if rows else {}}
        data = (json.dumps(line) + "\n").encode()
        descriptor = self._log.fileno()
        try:
            written = os.write(descriptor, data)
            if written < len(data):  # a full disk: take the part back rather than glue the next line to it
                os.ftruncate(descriptor, os.fstat(descriptor).st_size - written)
                raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes")
        except OSError as error:  # the answer stands: a log that cannot record it is counted, not the client's 500
            metrics.PREDICTION_LOG_ERRORS.labels(self.name).inc()
            if not self._log_failing:
                log.warning("prediction log %s: cannot record answers (%s); answering on, counting them in "
                            "flowline_prediction_log_errors_total", self.prediction_log, error)
            self._log_failing = True
            return
        if self._log_failing:
            log.warning("prediction log %s: recording answers again", self.prediction_log)
            self._log_failing = False

    def reload(self, package_path: str | Path | None = None) -> str:
        """Load a new version (from `package_path`, else the same path) and swap it in.

        Requests in flight finish on the version they started with. Raises PackageError,
        leaving the running version in place, when the new package fails verification or holds another
        use case than the one served (its clients' requests would all be refused).
        """
        path, old = str(package_path or self.package_path), self.package
        if not is_s3(path):  # before loading too, where it is at hand: a load seeds the online store
            refuse_other_use_case(path, self.name, read_manifest(path)["name"], old.use_case.name)
        new = self._load_package(path)
        refuse_other_use_case(path, self.name, new.use_case.name, old.use_case.name)  # as verified
        if new.created_at < old.created_at:  # a rollback, or a replay of an old signed package: said, not refused
            log.warning("%s: version %s, built %s, replaces %s, built later (%s): an older package", self.name,
                        new.version, _built(new), old.version, _built(old))
        self.package, self.package_path = new, path
        publish_package(self.name, new, replaced=old)
        self.ready = True  # back in service after an unload
        return new.version

    def get_input_types(self) -> List[Dict]:
        return self.package.input_types()

    def get_output_types(self) -> List[Dict]:
        return output_types(self.package)

    def predict(
        self, payload: Union[Dict, InferRequest], headers: Optional[Mapping[str, str]] = None
    ) -> Union[Dict, InferResponse]:
        """One request alone (KServe's generic routes); the server's own routes call `answer`."""
        job = self.begin(payload, headers)
        self.score(job.package, [job])
        return self.finish(job)

    async def answer(self, payload: Union[Dict, InferRequest], headers: Mapping[str, str],
                     version: Optional[str] = None) -> Union[Dict, InferResponse]:
        """`predict` for the server's v1 and v2 routes: with batching on, concurrent requests to the same package
        version share one transform and one predict (batching.py). Observes KServe's own latency histograms
        (checks as preprocessing, scoring with its wait as predict, the answer as postprocessing). `version`: the
        one a versioned v2 URL names (see `_route`)."""
        labels = get_labels(self.name)
        job = self.begin(payload, headers, version)
        scoring = time.perf_counter()
        PRE_HIST_TIME.labels(**labels).observe(scoring - job.started)
        if self.batcher is None or job.package.store is not None:  # the store's reads and writes stay in order
            self.score(job.package, [job])
        else:
            await self.batcher.submit(job)
        answering = time.perf_counter()
        PREDICT_HIST_TIME.labels(**labels).observe(answering - scoring)
        response = self.finish(job)
        POST_HIST_TIME.labels(**labels).observe(time.perf_counter() - answering)
        return response

    def begin(self, payload: Union[Dict, InferRequest], headers: Optional[Mapping[str, str]],
              version: Optional[str] = None) -> Job:
        """A request's id, arm and checked records (or encoded features); a bad request fails here, alone."""
        started = time.perf_counter()
        request_id = _request_id(payload, headers)
        arm, package = self._route(request_id, version)
        job = Job(payload, request_id, arm, package, started, V2_ROW if isinstance(payload, InferRequest) else V1_ROW)
        try:
            if isinstance(payload, InferRequest):
                check_requested_outputs(package, payload)
            records, job.as_of = self._customers_by_id(package, payload)
            if records is not None:
                job.records = records
                job.features, job.values = transform(package, records, job.row)
            elif isinstance(payload, InferRequest):
                job.records, job.features = self._features_from_tensors(package, payload)
            else:
                job.records = package.checker.check_batch(_instances(payload), "instances", self.max_batch)
        except Exception as error:
            self._failed(job, error)
            raise
        return job

    def score(self, package: LoadedPackage, jobs: List[Job]) -> None:
        """Score jobs of one package version together (batching.score_jobs), then count their rows."""
        metrics.BATCH_REQUESTS.labels(self.name).observe(len(jobs))
        score_jobs(package, jobs, lambda values: self._served_rows(package, values))

    def finish(self, job: Job) -> Union[Dict, InferResponse]:
        """A scored job's answer, with its metrics and prediction-log line (or its error, counted and logged)."""
        try:
            if job.error is not None:
                raise job.error
            ids = job.package.ids_of(job.records)
            response = self._answer(job, ids)
        except Exception as error:
            self._failed(job, error)
            raise
        if self._store_down and job.package.store is not None:
            self._store_up()
        seconds = time.perf_counter() - job.started
        metrics.observe_predictions(self.name, job.package.version, len(job.scores), job.positive, seconds)
        if self._log:
            self._log_prediction(job, len(job.scores), seconds, ids=ids)
        return response

    def _failed(self, job: Job, error: Exception) -> None:
        """An arm's failures count against it in the canary analysis."""
        self._store_failed(error)
        metrics.PREDICTION_ERRORS.labels(self.name, job.package.version, type(error).__name__).inc()
        if self._log:
            self._log_prediction(job, 0, time.perf_counter() - job.started, type(error).__name__)

    def _customers_by_id(self, package: LoadedPackage, payload: Union[Dict, InferRequest]
                         ) -> tuple[Optional[list], Optional[str]]:
        """The customer rows a CLV request names by customer id alone, from the online store
        (customers_online.py), and the as-of date (ISO) they describe; (None, None) for any other request."""
        if not (self.online_store_url and customers_online.wants(package.use_case, payload)):
            return None, None
        records, as_of = customers_online.customer_records(self._online_store(), package.use_case,
                                                           package.matrix_checker, payload, self.max_batch)
        return records, as_of.isoformat()

    def _served_rows(self, package: LoadedPackage, values: Mapping[str, np.ndarray]) -> None:
        """After an answer: count the rows outside the training profile, and append the rows' events to the
        online store when this use case owns its entity-feature definition."""
        for (column, reason), rows in package.feature_set.out_of_profile(values).items():
            metrics.OUT_OF_PROFILE.labels(self.name, column, reason).inc(rows)
        if package.writes_events:
            self._append_events(package, values, "served")

    def _append_events(self, package: LoadedPackage, values: Mapping[str, np.ndarray], source: str,
                       once: Optional[str] = None) -> int:
        """Append the rows' events to each definition's history; with `once` (payloads.push_key), a definition that
        took a push of that key already takes nothing (counted as source "repeated"). The events appended."""
        appended = repeated = 0
        for definition, events in package.feature_set.entity_events(values).items():
            count = sum(map(len, events.values()))
            if package.store.append_many(definition, events, once=once):
                appended += count
            else:
                repeated += count
        metrics.ENTITY_EVENTS.labels(self.name, source).inc(appended)
        if repeated:
            metrics.ENTITY_EVENTS.labels(self.name, "repeated").inc(repeated)
        return appended

    def push_events(self, payload: Any, headers: Mapping[str, str]) -> Dict:
        """Append events to the online store: plain records of the event columns (a v1 body, `instances`, or a
        v2 body), or a payload-logger CloudEvent (ce-type REQUEST_EVENT) whose body is a served request.
        Every record is checked before anything is written: a bad one is a 400 naming its field."""
        package = self.package
        feature_set, use_case = package.feature_set, package.use_case
        if use_case.transaction_log is not None and self.online_store_url:  # CLV: the records are transactions
            pushed = customers_online.push(self._online_store(), use_case, payload, headers)
            # One event a transaction, written or, under a key pushed before, not.
            metrics.ENTITY_EVENTS.labels(self.name, "repeated" if pushed["repeated"] else "pushed").inc(pushed["rows"])
            return {"model_name": self.name, **pushed}
        if not feature_set.entity_features:
            raise BadRequest("no_entity_features", f"events: model {self.name!r} has no entity features to update")
        if not package.writes_events:
            raise BadRequest("not_the_owner", f"events: model {self.name!r} reads the entity features of "
                                              f"{use_case.entity_definition!r}; push events to that use case's model")
        event_type = headers.get("ce-type")
        if event_type is not None and event_type != REQUEST_EVENT:
            raise BadRequest("unsupported_event", f"ce-type: expected {REQUEST_EVENT!r} (a served request) or no "
                                                  f"ce-type (plain records), got {describe(event_type)}")
        checker = package.checker if event_type else RecordChecker(use_case, feature_set.event_columns,
                                                                   use_case.id_columns)
        records = payload_records(payload, checker)
        once = push_key(headers)
        try:
            values = feature_set.record_values(records, feature_set.event_columns)
            appended = self._append_events(package, values, "pushed", once)
        except (FeatureError, OnlineStoreError) as error:  # what the checks let through; still the client's
            raise BadRequest("malformed_request", f"events: {error}") from None
        except OnlineStoreUnavailable as error:  # a 503 (server.py)
            self._store_failed(error)
            raise
        return {"model_name": self.name, "definition": use_case.entity_definition, "rows": len(records),
                "events": appended, "repeated": once is not None and appended == 0}

    async def explain(self, payload: Dict, headers: Optional[Dict[str, str]] = None) -> Dict:
        """SHAP contributions per raw column for each instance, plus the base value (in margin units), and the
        entity features the row was given (read from the online store, when the package has them). A request id
        (x-request-id) that predict sent to the canary is explained by the canary: the model that decided explains.
        The answer carries its request id, as predict's does.

        Computed in a thread, one explain at a time per worker: on the event loop it held up every predict, metadata
        and readiness request the worker had meanwhile. A request carries at most `max_explain_rows` rows
        (`--max-explain-rows`, default 64), as an explain costs from about 1 ms a row (churn) to 0.15 s a row
        (fraud-claims, CatBoost first): 1,024 claims took 81 s, and every other explain on the worker waited."""
        explanations.check_explain_rows(payload, self.max_explain_rows)
        async with self._explaining:
            try:
                return await asyncio.to_thread(self._explanations, payload, headers)
            except OnlineStoreUnavailable as error:  # a 503 (server.py); readiness follows, as for predict
                self._store_failed(error)
                raise

    def _explanations(self, payload: Dict, headers: Optional[Dict[str, str]]) -> Dict:
        request_id = _request_id(payload, headers)
        _, package = self._route(request_id)
        records, _ = self._customers_by_id(package, payload)
        if records is None:
            records = package.checker.check_batch(_instances(payload), "instances", self.max_batch)
        return {"model_name": self.name, "model_version": package.version, "id": request_id,
                **explanations.explained(package, records)}

    def _features_from_tensors(self, package: LoadedPackage, request: InferRequest
                               ) -> tuple[Optional[list], Optional[np.ndarray]]:
        """The request's checked records (None for a bare encoded matrix) and its encoded matrix (None for raw
        columns, which `score` transforms)."""
        inputs = request.inputs
        if not inputs:
            raise BadRequest("empty_batch", "inputs: no input tensors")
        checker, beside = package.checker, package.matrix_checker
        # By name: `tensor not in matrices` compared tensors with InferInput.__eq__, quadratic in their count
        # (8,000 inputs of unknown names held the event loop, health checks too, for 9 s before the 400).
        matrices = [tensor for tensor in inputs if tensor.name not in checker.known]
        others = [tensor for tensor in inputs if tensor.name in checker.known]
        if len(matrices) == 1 and all(tensor.name in beside.known for tensor in others):
            matrix = feature_matrix(matrices[0], package.feature_set.width, self.max_batch)
            if not beside.columns and not others:
                return None, matrix
            # Per-group thresholds need each row's group: the mitigation's attributes come as raw tensors beside
            # it, as do the ids.
            records = beside.check_batch(tensor_records(others, beside), "inputs", self.max_batch)
            if len(records) != len(matrix):
                raise BadRequest("wrong_shape", f"inputs: {len(records)} rows of sensitive attributes for "
                                 f"{len(matrix)} rows of {describe(matrices[0].name)}")
            return records, matrix
        return package.checker.check_batch(tensor_records(inputs, package.checker), "inputs", self.max_batch), None

    def _answer(self, job: Job, ids: Dict[str, list]) -> Union[Dict, InferResponse]:
        package, payload, scores, records, request_id = job.package, job.payload, job.scores, job.records, job.request_id
        if package.is_binary:
            outputs = {"probability": scores.astype(np.float32),
                       "decision": np.array(package.labels(job.positive), dtype=object)}
            if job.thresholds is not None:  # the threshold that decided each row
                outputs["threshold"] = job.thresholds
        else:
            outputs = {"prediction": scores.astype(np.float32)}
            if package.has_segments:
                outputs["segment"] = np.array(package.segments(scores), dtype=object)
        # what the numbers are: how a decision is taken, or what a customer's value means and at which date
        rule = {"decision_rule": package.decision_rule} if package.is_binary else {}
        rule.update({"value_rule": package.value_rule} if package.value_rule else {})
        rule.update({"as_of": job.as_of} if job.as_of else {})
        if not isinstance(payload, InferRequest):
            keys, columns = list(outputs), package.use_case.id_columns
            return {
                "predictions": [{**ids_sent(record, columns), **dict(zip(keys, row))}
                                for record, row in zip(records, zip(*(v.tolist() for v in outputs.values())))],
                "model_name": self.name,
                "model_version": package.version,
                "id": request_id,
                **rule,
            }
        binary = payload.use_binary_outputs
        tensors = [answer_tensor(name, "FP32" if values.dtype == np.float32 else "BYTES", values, binary)
                   for name, values in outputs.items()]
        datatypes = {tensor.name: tensor.datatype for tensor in payload.inputs}
        for name, values in ids.items():  # each id as sent: its tensor's datatype, in row order
            column = np.asarray(values, dtype=to_np_dtype(datatypes[name]))
            tensors.append(answer_tensor(name, datatypes[name], column, binary))
        return InferResponse(
            response_id=request_id if payload.id is None else payload.id,  # as sent, "" too: the protocol returns it
            model_name=self.name, model_version=package.version, infer_outputs=tensors,
            parameters=rule or None,
            use_binary_outputs=payload.use_binary_outputs, requested_outputs=payload.request_outputs,
        )


def output_types(package: LoadedPackage) -> List[Dict]:
    """The v2 outputs a package answers (besides the id columns a request sends)."""
    if package.is_binary:
        randomized = package.mitigation is not None and package.mitigation.randomized
        return [{"name": "probability", "datatype": "FP32", "shape": [-1]},
                {"name": "decision", "datatype": "BYTES", "shape": [-1]},
                *([] if randomized else [{"name": "threshold", "datatype": "FP32", "shape": [-1]}])]
    segment = [{"name": "segment", "datatype": "BYTES", "shape": [-1]}] if package.has_segments else []
    return [{"name": "prediction", "datatype": "FP32", "shape": [-1]}, *segment]


def check_requested_outputs(package: LoadedPackage, payload: InferRequest) -> None:
    """Refuse an `outputs` name the answer would not have before anything is scored, counted or stored: the
    package's outputs and the id columns the request sends."""
    if not payload.request_outputs:  # most requests name none
        return
    sent_ids = {tensor.name for tensor in payload.inputs if tensor.name in package.use_case.id_columns}
    known = [output["name"] for output in output_types(package)] + sorted(sent_ids)
    for index, output in enumerate(payload.request_outputs):
        if output.name not in known:
            raise BadRequest("unknown_output", f"outputs[{index}].name: {describe(output.name)} is not an output of "
                                               f"this model; expected one of {known}")


def answer_tensor(name: str, datatype: str, values: np.ndarray, binary: bool) -> InferOutput:
    """An answer's one-row-per-value tensor: binary data through KServe's encoder, else JSON data set directly,
    as that encoder sets it (Python scalars; BYTES as UTF-8 text) without its per-value loop."""
    tensor = InferOutput(name=name, shape=[len(values)], datatype=datatype)
    if binary:
        tensor.set_data_from_numpy(values, binary_data=True)
    elif datatype == "BYTES":
        tensor.data = [value.decode("utf-8") if type(value) is bytes else str(value) for value in values.tolist()]
    else:
        tensor.data = values.tolist()
    return tensor


def _built(package: LoadedPackage) -> str:
    return datetime.fromtimestamp(package.created_at, timezone.utc).isoformat(timespec="seconds")


def _request_id(payload: Union[Dict, InferRequest], headers: Optional[Mapping[str, str]]) -> str:
    """The v2 request's `id`, else the x-request-id header (Knative and most proxies set one), else a new id.
    BadRequest (400) for one longer than MAX_ID_CHARACTERS: the answer and the prediction log repeat it."""
    if isinstance(payload, InferRequest) and payload.id:
        request_id, field = str(payload.id), "id"
    else:
        request_id, field = (headers or {}).get("x-request-id") or uuid.uuid4().hex, "header x-request-id"
    if len(request_id) > MAX_ID_CHARACTERS:
        raise BadRequest("bad_id", f"{field}: {len(request_id)} characters, at most {MAX_ID_CHARACTERS}")
    return request_id


def _datatype_of(column_type: str) -> str:
    return {"integer": "INT64", "number": "FP64"}.get(column_type, "BYTES")


def _instances(payload: Any) -> Any:
    if isinstance(payload, dict) and {"specversion", "data"} <= payload.keys():  # KServe hands the envelope on
        missing = [name for name in STRUCTURED_EVENT if name not in payload]
        raise BadRequest("unsupported_event", f"body: a structured-mode CloudEvent without {', '.join(missing)}: "
                         f"KServe reads one that has all of {', '.join(STRUCTURED_EVENT)}; or send binary mode "
                         "(ce-* headers, the data as the body)")
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest("malformed_request", "body: expected an object with 'instances', a list of records")
    return payload["instances"]


def publish_package(model: str, package: LoadedPackage, replaced: Optional[LoadedPackage] = None) -> None:
    """Describe the package a model serves; drop the series of the version it replaces."""
    if replaced is not None and replaced.version != package.version:
        metrics.SERVED_PACKAGES.remove(model, replaced.version)
    metrics.SERVED_PACKAGES.publish(model, package.version, package.use_case.name, package.use_case.task,
                                    package.created_at, package.evaluation["gates_passed"],
                                    package.evaluation["metrics"])
    if package.writes_events:  # each definition it owns from 0, so that increase() sees a first loss too
        for feature in package.feature_set.entity_features:
            metrics.ONLINE_STORE_RESEEDED.labels(model, feature.name)


def answered(job: Job) -> Dict[str, list]:
    """What a request's rows were answered, for the prediction log: each row's score (probability, or prediction),
    and a binary model's decision and the threshold that took it (per group when mitigated), so that a disputed
    decision can be rebuilt from the log and the ids."""
    found: Dict[str, list] = {"score": job.scores.tolist()}
    if job.positive is not None:
        found["decision"] = job.package.labels(job.positive)
    if job.thresholds is not None:
        found["threshold"] = np.asarray(job.thresholds, dtype=np.float64).tolist()
    return found
