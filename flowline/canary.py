"""The canary controller: read what the champion and the canary served, decide, patch, record.

An arm's numbers (requests, failures, p99 latency, good outcomes) come from one of two sources:

- **Prometheus**, when one is configured: the model servers' own series, per `model_version`,
  counted over the canary's lifetime (since it was first scraped) and summed over pods. Both
  arms are counted over that same window: a champion pod serving from before the canary
  counts from the window's start, not from its own. A counter lives in its pod's process,
  so an instant sum would lose a pod scaled away or replaced: each series' maximum over the
  window (less its value at the window's start) keeps it, and a series that reset (its
  container restarted in place) is counted by `increase` instead. Queries match the namespace
  (or series with no namespace label, as a scrape outside Kubernetes has). The champion is the
  older package (`flowline_model_created_timestamp_seconds`), the canary the newer. Outcomes come from
  `flowline_outcomes_total{outcome="success" or "failure"}`, which the application exports when it learns
  an outcome (see `outcome_counter`), labelled with the `model_version` the answer carried.
  Those counters count an outcome when it arrives, so the arrived outcomes (success and
  failure) are the ones judged, and the answered requests without one are pending.
- **Files**: the server's `--prediction-log` (request id, arm, version, failure, seconds) and
  the outcomes, joined by request id.

`judge_canary` decides with `ab_testing.canary_decision` (guardrails, then the mSPRT),
patches the InferenceService through KServeClient when asked, and records the decision
in the audit trail, applied or not.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np

from flowline import audit
from flowline.ab_testing import (LATENCY_BUCKETS, ArmOutcomes, CanaryPolicy, DesignError, business_impact,
                                  canary_decision)

ARMS = ("champion", "canary")
OUTCOMES_METRIC = "flowline_outcomes"
SUCCESS, FAILURE = "success", "failure"
MODEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # a DNS label, as InferenceService names are


class CanarySourceError(RuntimeError):
    """An arm's numbers cannot be read: Prometheus unreachable or refusing, or not two versions serving."""


def outcome_counter(registry=None):
    """The counter an application increments when it learns a served answer's outcome:
    `counter.labels(model_name, model_version, "success" or "failure").inc()`, with the
    `model_version` the answer carried. Prometheus scrapes it from the application."""
    from prometheus_client import REGISTRY, Counter

    return Counter(OUTCOMES_METRIC, "Outcomes of served answers, reported by the application, per model version.",
                   ["model_name", "model_version", "outcome"], registry=registry or REGISTRY)


def arms_from_logs(prediction_log: str | Path, outcomes_file: str | Path, model_name: str = "") -> dict[str, ArmOutcomes]:
    """Each arm's requests, failures, p99 latency of its answers (the server's `--prediction-log`) and
    outcomes, joined by request id from `outcomes_file`: JSON lines {"request_id": ..., "outcome": 1 or 0}. An
    answered request without a line there is pending (its outcome has not arrived), not a bad outcome.

    One model is judged: `model_name`, or the only one the log holds (a server with several models writes them
    all to one log). An arm whose log spans several versions (a canary replaced by a newer one) is judged on its
    newest version, the one serving now."""
    served = _lines(prediction_log, ("request_id", "arm", "seconds", "error"),
                    '{"request_id", "arm", "version", "seconds", "error", ...} (the server\'s --prediction-log)')
    models = sorted({line.get("model", "") for line in served})
    if model_name:
        served = [line for line in served if line.get("model", model_name) == model_name]
    elif len(models) > 1:
        raise DesignError(f"{prediction_log} holds the answers of models {', '.join(models)}: give --name")
    _refuse_repeated_ids(prediction_log, [str(line["request_id"]) for line in served])
    arrived = {}
    for number, record in enumerate(_lines(outcomes_file, ("request_id", "outcome"), OUTCOME_LINE), 1):
        if record["outcome"] not in (0, 1) or isinstance(record["outcome"], float):
            raise DesignError(f"{outcomes_file}: outcome {record['outcome']!r} of request {record['request_id']!r}: "
                              "give 1 (good) or 0")
        if arrived.setdefault(str(record["request_id"]), record["outcome"]) != record["outcome"]:
            raise DesignError(f"{outcomes_file}: request {record['request_id']!r} has two outcomes, 0 and 1: "
                              "give each request one")
    arms = {}
    for arm in ARMS:
        mine = [line for line in served if line["arm"] == arm]
        version = mine[-1].get("version", "") if mine else ""
        mine = [line for line in mine if line.get("version", "") == version]
        answered = [line for line in mine if line["error"] is None]
        outcomes = [arrived[str(line["request_id"])] for line in answered if str(line["request_id"]) in arrived]
        seconds = np.sort([line["seconds"] for line in answered])
        arms[arm] = ArmOutcomes(
            requests=len(mine), errors=len(mine) - len(answered), successes=sum(outcomes),
            latency_p99_seconds=float(np.percentile(seconds, 99)) if answered else 0.0,
            version=version, outcomes=len(outcomes),
            latency_counts=tuple(int(n) for n in np.searchsorted(seconds, LATENCY_BUCKETS, side="right")))
    return arms


def _refuse_repeated_ids(path: str | Path, request_ids: list[str]) -> None:
    """A DesignError naming a request id `path` holds twice: the id joins an answer to its outcome, and a line
    repeated counted as another request, of the same outcome."""
    seen: set[str] = set()
    for request_id in request_ids:
        if request_id in seen:
            raise DesignError(f"{path}: request {request_id!r} is logged twice: the request id joins an answer to "
                              "its outcome, so each must be one request's")
        seen.add(request_id)


OUTCOME_LINE = '{"request_id": ..., "outcome": 0 or 1}'


def _lines(path: str | Path, fields: tuple[str, ...], form: str) -> list[dict]:
    """The JSON lines of `path` (blank lines skipped), each an object with `fields`; a DesignError naming the
    first that is not."""
    records = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and all(name in record for name in fields)):
            raise DesignError(f"{path}: line {number} is not {form}")
        records.append(record)
    return records


def _query(prometheus_url: str, promql: str, timeout: float) -> dict[str, float]:
    """An instant query's result as {model_version: value}."""
    return {labels.get("model_version", ""): value for labels, value in _samples(prometheus_url, promql, timeout)}


def _samples(prometheus_url: str, promql: str, timeout: float) -> list[tuple[dict, float]]:
    """An instant query's result as (labels, value) pairs."""
    url = f"{prometheus_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:300]
        raise CanarySourceError(f"Prometheus at {prometheus_url} refused {promql!r}: HTTP {error.code} {detail}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise CanarySourceError(f"Prometheus at {prometheus_url} cannot be queried: {error}")
    if body.get("status") != "success":
        raise CanarySourceError(f"Prometheus at {prometheus_url} answered {body.get('error', body)} to {promql!r}")
    return [(sample["metric"], float(sample["value"][1])) for sample in body["data"]["result"]]


def _selector(model_name: str, namespace: str) -> str:
    """The model's series: in the namespace, or with no namespace label (a scrape outside Kubernetes)."""
    return f'model_name="{model_name}"' + (f', namespace=~"{namespace}|"' if namespace else "")


def _counted(series: str, window: str) -> str:
    """PromQL for each series' count over `window` (the last `window` up to now): its maximum, which keeps a pod
    that has since gone, less its value when the window began, for a series that was already there (a champion
    pod serving from before the canary); where the series reset (a container restarted in place), its increase."""
    most = f"max_over_time({series}[{window}])"
    return (f"((({most} - {series} offset {window}) or {most}) unless resets({series}[{window}]) > 0) "
            f"or increase({series}[{window}])")


def arm_queries(model_name: str, namespace: str, window: str) -> dict[str, str]:
    """The queries of each arm's numbers over `window` (a PromQL duration), by model_version: requests, failed
    ones, the outcomes that arrived and the good ones among them, and the p99 latency; and its latency buckets,
    by model_version and le (`latency_buckets`)."""
    selector = _selector(model_name, namespace)
    outcomes = f'{OUTCOMES_METRIC}_total{{{selector}, outcome=~"{SUCCESS}|{FAILURE}"}}'
    successes = f'{OUTCOMES_METRIC}_total{{{selector}, outcome="{SUCCESS}"}}'
    return {
        "requests": f"sum by (model_version) ({_counted(f'flowline_request_latency_seconds_count{{{selector}}}', window)})",
        "errors": f"sum by (model_version) ({_counted(f'flowline_prediction_errors_total{{{selector}}}', window)})",
        "outcomes": f"sum by (model_version) ({_counted(outcomes, window)})",
        "successes": f"sum by (model_version) ({_counted(successes, window)})",
        "p99": f"histogram_quantile(0.99, {latency_buckets(model_name, namespace, window)})",
    }


def latency_buckets(model_name: str, namespace: str, window: str) -> str:
    """PromQL for each version's latency histogram over `window`: answered requests at or below each bound, by
    model_version and le."""
    series = f"flowline_request_latency_seconds_bucket{{{_selector(model_name, namespace)}}}"
    return f"sum by (model_version, le) ({_counted(series, window)})"


def _step(lookback_seconds: int) -> int:
    return max(10, math.ceil(lookback_seconds / 10_000))


def first_seen_query(model_name: str, namespace: str, lookback_seconds: int) -> str:
    """PromQL for when each version of the model was first scraped within the last `lookback_seconds` (to within
    a step: a 10,000th of it, and at least 10 seconds): for the canary, when it began to serve."""
    step = _step(lookback_seconds)
    return (f"min by (model_version) (min_over_time(timestamp(flowline_model_created_timestamp_seconds"
            f"{{{_selector(model_name, namespace)}}})[{lookback_seconds + step}s:{step}s]))")


def comparison_window(first_seen: float, lookback_seconds: int, now: float) -> str:
    """The window both arms are counted over (a PromQL duration): from just before the canary was first seen (a
    step and a second before, so that its first sample falls inside) to now; at least a minute."""
    return f"{max(60, math.ceil(now - first_seen) + _step(lookback_seconds) + 1)}s"


def outcomes_of_answered(answered: float, arrived: float, good: float) -> tuple[float, float]:
    """The outcomes (arrived, good) an arm's `answered` requests can have. Outcomes are counted when they
    arrive, so a window also counts outcomes of requests answered before it (the champion's, mostly): more than
    it answered would overstate how much the test knows. Capped at the answered requests, at the same rate."""
    if arrived <= answered:
        return arrived, good
    return answered, good * answered / arrived


def arms_from_prometheus(prometheus_url: str, model_name: str, namespace: str = "", timeout: float = 10.0
                         ) -> dict[str, ArmOutcomes]:
    """Each arm's numbers from the Prometheus HTTP API (see the module's notes)."""
    if not MODEL_NAME.match(model_name):
        raise CanarySourceError(f"model name {model_name!r}: give the InferenceService's name (a DNS label)")
    if namespace and not MODEL_NAME.match(namespace):
        raise CanarySourceError(f"namespace {namespace!r}: give the InferenceService's namespace (a DNS label)")
    selector = _selector(model_name, namespace)
    created = _query(prometheus_url, f"max by (model_version) (flowline_model_created_timestamp_seconds{{{selector}}})",
                     timeout)
    if len(created) != 2:
        raise CanarySourceError(f"Prometheus shows {len(created)} version(s) of {model_name} serving "
                                f"({', '.join(sorted(created)) or 'none'}): a canary analysis needs a champion and "
                                "a canary")
    champion, canary = sorted(created, key=created.get)
    now = time.time()
    lookback = max(60, math.ceil(now - created[canary]))  # the canary's package was built before it served
    first_seen = _query(prometheus_url, first_seen_query(model_name, namespace, lookback), timeout)
    window = comparison_window(first_seen.get(canary, created[canary]), lookback, now)
    found = {what: _query(prometheus_url, promql, timeout)
             for what, promql in arm_queries(model_name, namespace, window).items()}
    buckets: dict[str, dict[float, float]] = {}
    for labels, count in _samples(prometheus_url, latency_buckets(model_name, namespace, window), timeout):
        buckets.setdefault(labels.get("model_version", ""), {})[float(labels.get("le", "nan"))] = count
    arms = {}
    for arm, version in zip(ARMS, (champion, canary)):
        served, failed = round(found["requests"].get(version, 0)), round(found["errors"].get(version, 0))
        latency = found["p99"].get(version, 0.0)
        arrived, good = outcomes_of_answered(served, found["outcomes"].get(version, 0.0),
                                             found["successes"].get(version, 0.0))
        arms[arm] = ArmOutcomes(requests=served + failed, errors=failed, successes=round(good),
                                latency_p99_seconds=0.0 if np.isnan(latency) else latency, version=version,
                                outcomes=round(arrived),
                                latency_counts=_latency_counts(buckets.get(version, {}), served))
    return arms


def _latency_counts(buckets: dict[float, float], answered: int) -> tuple[int, ...]:
    """A version's counts at LATENCY_BUCKETS from its scraped buckets, cumulative and at most its answers (the
    windowed counts of pods come and gone need not be exactly so); none when a bound is missing."""
    counts = [buckets.get(bound, math.nan) for bound in LATENCY_BUCKETS]
    if any(math.isnan(count) for count in counts):
        return ()
    return tuple(min(int(count), answered) for count in np.maximum.accumulate(np.round(counts)))


def read_arms(prometheus_url: str = "", model_name: str = "", predictions: str = "", outcomes: str = "",
              namespace: str = "") -> tuple[dict[str, ArmOutcomes], str]:
    """The arms from Prometheus when a URL is given, else from the prediction log and outcomes files;
    with a description of the source for the record."""
    if prometheus_url:
        return arms_from_prometheus(prometheus_url, model_name, namespace), f"prometheus {prometheus_url}"
    if not (predictions and outcomes):
        raise DesignError("give a Prometheus URL, or both the prediction log and the outcomes file")
    return arms_from_logs(predictions, outcomes, model_name), f"files {predictions} and {outcomes}"


def patch_inference_service(name: str, namespace: str, decision: str, kubeconfig: Optional[str] = None) -> str:
    """Promote (the canary takes all traffic) or roll back (all traffic to the champion) through KServeClient.
    A promotion then moves the model's drift monitor to the promoted package; returns what happened to the
    monitor ("" on a rollback, which leaves it on the champion's)."""
    from kserve import KServeClient, V1beta1InferenceService
    from kubernetes.client import V1ObjectMeta

    from flowline.cluster import follow_served_package
    from flowline.inference_service import API_VERSION, KIND, PROMOTE_PATCH, ROLLBACK_PATCH

    patch = {"promote": PROMOTE_PATCH, "rollback": ROLLBACK_PATCH}[decision]
    # The spec stays a plain dict: KServe's model classes drop None fields, and promoting sends
    # canaryTrafficPercent: null, which the merge patch reads as "remove the field".
    service = V1beta1InferenceService(api_version=API_VERSION, kind=KIND,
                                      metadata=V1ObjectMeta(name=name, namespace=namespace), spec=patch["spec"])
    KServeClient(config_file=kubeconfig).patch(name, service, namespace=namespace)
    return follow_served_package(name, namespace, kubeconfig) if decision == "promote" else ""


def judge_canary(
    arms: dict[str, ArmOutcomes],
    policy: CanaryPolicy,
    audit_log: str,
    name: Optional[str] = None,
    namespace: str = "flowline",
    apply: bool = False,
    kubeconfig: Optional[str] = None,
    source: str = "",
    value_per_success: float = 0.0,
) -> dict:
    """Decide promote, hold or rollback; on promote or rollback with `apply`, patch the InferenceService;
    record the decision in the audit trail. Returns the decision with "applied", and with
    `value_per_success` (what one good outcome is worth, e.g. a retained customer's margin from the
    use case's costs) the business impact of the canary per 1,000 requests."""
    if apply and not name:
        raise DesignError("applying a decision needs the InferenceService's name")
    outcome = canary_decision(arms["champion"], arms["canary"], policy)
    applied = apply and outcome["decision"] in ("promote", "rollback")
    decided = {**outcome, "applied": applied}
    if applied and (drift_monitor := patch_inference_service(name, namespace, outcome["decision"], kubeconfig)):
        decided["drift_monitor"] = drift_monitor
    if value_per_success and "canary_success_rate" in outcome:
        decided["impact_per_1000_requests"] = business_impact(
            outcome["canary_success_rate"] - outcome["champion_success_rate"], 1000, value_per_success)
    audit.append(audit_log, "canary_decision", {
        "inference_service": f"{namespace}/{name}" if name else None, **decided, "source": source,
        "arms": {arm: asdict(numbers) for arm, numbers in arms.items()}, "policy": asdict(policy)})
    return decided
