"""Scoring requests, alone or batched: concurrent requests to one package version share one transform and predict.

A `Job` is one request on its way to its answer (model.py's `FlowlineModel.begin` makes it from a checked
request, `score` fills in its scores, `finish` answers it). A `Batcher` collects the jobs that arrive
together for the same package version (so the same arm, champion or canary, and a reload never mixes two
versions in a batch) and scores them at once: a batch closes at the first event-loop turn in which no new
job joined, after `wait_s` at most, or when it holds `max_rows` rows. A lone request so waits one loop
turn, not `wait_s`; under load, the requests that arrived while the previous batch ran go together.
Everything per request stays per request: checks before a job joins (a bad request fails alone),
its answer, id, metrics and prediction-log line after.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

import numpy as np
from kserve.protocol.infer_type import InferRequest

from flowline.features.kinds import Values
from flowline.inference_services.request_checks import BadRequest
from flowline.scoring import Scorer


@dataclass
class Job:
    """One request to a FlowlineModel: what `begin` checked, then what `score` computed for its rows."""

    payload: Union[Dict, InferRequest]
    request_id: str
    arm: str  # champion or canary
    package: Scorer  # one version for the whole request, even if a reload lands meanwhile
    started: float  # perf_counter at arrival
    row: str  # how an error names one of its rows, e.g. "instances[{}]"
    records: Optional[List[Dict[str, Any]]] = None  # checked raw records; None for a bare encoded matrix
    features: Optional[np.ndarray] = None  # encoded rows; None until the (batch's) transform
    values: Optional[Values] = None  # parsed raw columns, for the out-of-profile counts; None for a matrix
    scores: Optional[np.ndarray] = None
    positive: Optional[np.ndarray] = None  # binary decisions
    thresholds: Optional[np.ndarray] = None  # the threshold that decided each row (binary, not randomised)
    error: Optional[Exception] = None  # why this request is refused; the others in its batch are not
    as_of: Optional[str] = None  # a CLV request by customer id: the date its customers are valued at (ISO)

    @property
    def rows(self) -> int:
        return len(self.records) if self.records is not None else len(self.features)


@dataclass
class _Batch:
    package: Scorer
    opened: float  # loop time
    jobs: List[Job] = field(default_factory=list)
    done: List[asyncio.Future] = field(default_factory=list)
    rows: int = 0
    seen: int = 1  # jobs at the last loop turn; the job that opens a batch joins it at once


class Batcher:
    """Per model: one open batch per package version; `score(package, jobs)` scores a closed one."""

    def __init__(self, score: Callable[[Scorer, List[Job]], None], wait_s: float, max_rows: int) -> None:
        if wait_s <= 0 or max_rows < 1:
            raise ValueError(f"batching needs a positive wait and at least 1 row, got {wait_s} s and {max_rows}")
        self.score, self.wait_s, self.max_rows = score, wait_s, max_rows
        self._open: Dict[int, _Batch] = {}  # by id(package): the batch holds its package, so the id stays its own

    async def submit(self, job: Job) -> None:
        """Wait until `job` is scored, with whatever else arrives for its package version meanwhile."""
        loop = asyncio.get_running_loop()
        key = id(job.package)
        batch = self._open.get(key)
        if batch is None:
            batch = self._open[key] = _Batch(job.package, loop.time())
            loop.call_soon(self._turn, key, batch)
        done = loop.create_future()
        batch.jobs.append(job)
        batch.done.append(done)
        batch.rows += job.rows
        if batch.rows >= self.max_rows:
            self._close(key, batch)
        await done

    def _turn(self, key: int, batch: _Batch) -> None:
        """Once per loop turn while the batch is open: keep it open while jobs still arrive, within wait_s."""
        if self._open.get(key) is not batch:
            return  # closed already (full)
        if len(batch.jobs) > batch.seen and asyncio.get_running_loop().time() - batch.opened < self.wait_s:
            batch.seen = len(batch.jobs)
            asyncio.get_running_loop().call_soon(self._turn, key, batch)
            return
        self._close(key, batch)

    def _close(self, key: int, batch: _Batch) -> None:
        del self._open[key]
        try:
            self.score(batch.package, batch.jobs)
        except Exception as error:  # noqa: BLE001 - score sets per-job errors; anything else fails the batch
            for job in batch.jobs:
                job.error = job.error or error
        for done in batch.done:
            if not done.done():
                done.set_result(None)


def score_jobs(package: Scorer, jobs: List[Job], served_rows: Callable[[Values], None]) -> None:
    """Score jobs of one package version together: one transform of the records not yet transformed, one model
    predict, one decision; then each job takes its rows, and `served_rows` gets the answered rows' values.
    Rows are scored independently, so each answer is the one the request alone would get. A job whose own rows
    cannot be answered (a feature or an answer beyond float32) gets its 400 alone; should the batch's transform
    or predict fail, each job is scored alone, so that only the request it came from fails."""
    waiting = [job for job in jobs if job.features is None]
    if waiting:
        _transform_jobs(package, waiting)
    ready = [job for job in jobs if job.error is None]
    if not ready:
        return
    try:
        features = ready[0].features if len(ready) == 1 else np.concatenate([job.features for job in ready])
        records = None if any(job.records is None for job in ready) else [r for job in ready for r in job.records]
        scores = package.model.predict(features)
        positive, thresholds = package.decisions(scores, features, records) if package.is_binary else (None, None)
    except Exception as error:  # noqa: BLE001 - counted and logged per request by its model
        if len(ready) == 1:
            ready[0].error = error
        else:
            for job in ready:
                score_jobs(package, [job], served_rows)
        return
    start = 0
    for job in ready:
        end = start + len(job.features)
        job.scores = scores[start:end]
        job.positive = None if positive is None else positive[start:end]
        job.thresholds = None if thresholds is None else thresholds[start:end]
        start = end
        try:
            require_finite(job.scores, job.row)
        except BadRequest as error:
            job.error = error
    answered = [job for job in ready if job.error is None and job.values is not None]
    if answered:
        try:
            served_rows(answered[0].values if len(answered) == 1 else
                        {column: np.concatenate([job.values[column] for job in answered]) for column in answered[0].values})
        except Exception as error:  # noqa: BLE001 - a failure to answer, counted and logged per request
            for job in answered:
                job.error = error


def _transform_jobs(package: Scorer, jobs: List[Job]) -> None:
    """Encoded features of the jobs' records in one transform; a job with a feature beyond float32 is refused."""
    records = [record for job in jobs for record in job.records]
    try:
        values = package.feature_set.record_values(records)
        features = package.feature_set.transform_values(values, len(records))
    except Exception as error:  # noqa: BLE001 - what the checks let through; counted and logged per request
        if len(jobs) == 1:
            jobs[0].error = error
        else:
            for job in jobs:
                _transform_jobs(package, [job])
        return
    start = 0
    for job in jobs:
        end = start + len(job.records)
        job.features, job.values = features[start:end], {column: v[start:end] for column, v in values.items()}
        start = end
        try:
            require_in_range(package, job.features, job.row)
        except BadRequest as error:
            job.error = error


def transform(package: Scorer, records: List[Mapping[str, Any]], row: str) -> tuple[np.ndarray, Values]:
    """Encoded features of checked records, and their parsed columns; 400 naming the record and its columns when
    a feature computed from them overflows float32 (an infinite feature makes XGBoost fail or answer NaN).
    One batch: entity features read the online store once per request."""
    values = package.feature_set.record_values(records)
    features = package.feature_set.transform_values(values, len(records))
    require_in_range(package, features, row)
    return features, values


def require_in_range(package: Scorer, features: np.ndarray, row: str) -> None:
    """400 naming the first row, and its columns, whose features overflowed float32."""
    if np.isinf(features).any():
        index, feature = (int(i) for i in np.argwhere(np.isinf(features))[0])
        columns = [c for c, share in zip(package.feature_set.input_columns, package.feature_set.owners[feature]) if share]
        raise BadRequest("out_of_range", f"{row.format(index)}: {', '.join(columns)}: the feature "
                                         f"{package.feature_set.feature_names[feature]} computed from them is beyond "
                                         "float32's range")


def require_finite(answers: np.ndarray, row: str) -> None:
    """A 200 never carries NaN or infinity: 400 naming the first row whose answer is not finite."""
    finite = np.isfinite(answers)
    if not finite.all():
        index = int(np.argwhere(~finite)[0][0])
        raise BadRequest("not_finite", f"{row.format(index)}: the model's answer for this row is not finite; "
                                       "its values are too far outside what the model was trained on")
