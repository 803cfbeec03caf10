"""The Katib backend of the tune and nas steps: submit an Experiment, wait, read the optimal trial.

No maintained KFP v2 launcher for Katib exists; this is flowline's, kept thin over the
Katib SDK (`KatibClient`). It runs inside the cluster, in a pipeline pod whose service
account may create Experiments (kustomize/base/rbac.yaml, flowline-pipeline-runner).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import asdict
from typing import Callable, Optional

from flowline.cluster import KUBE_CREDENTIALS, talking_to
from flowline.models.families import objective_metric
from flowline.search import SearchResult, Trial
from flowline.search_space import SearchSpace, search_space
from flowline.katib import ITERATIONS_METRIC, build_experiment, experiment_name, trial_source
from flowline.use_case import UseCase

POLL_SECONDS = 15
DEFAULT_TIMEOUT_SECONDS = 4 * 3600


class KatibError(RuntimeError):
    """An Experiment that failed, timed out, or finished without a successful trial."""


def katib_search(
    use_case: UseCase,
    family: str,
    trials: int,
    image: str,
    namespace: str,
    source: str = "",
    feature_plan: Optional[dict] = None,
    client=None,
    prefix: str = "tune",
    progress: Callable[[str], None] = print,
) -> SearchResult:
    """Run `family`'s search as a Katib Experiment and return its optimal trial's parameters, and its other
    succeeded trials, best first, as runners-up."""
    from kubeflow.katib import KatibClient
    from kubernetes.config import ConfigException

    try:
        client = client or KatibClient(namespace=namespace)
    except ConfigException as error:
        raise KatibError(f"the Katib backend finds no cluster to talk to ({error}): run it in a cluster or with a "
                         "kubeconfig ($KUBECONFIG), or search with tuning.backend optuna") from None
    name = experiment_name(use_case, family, suffix=secrets.token_hex(3))
    experiment = build_experiment(use_case, family, trials, image, namespace, name=name,
                                  source=trial_source(use_case, source), feature_plan=feature_plan)
    with talking_to("the Kubernetes API", client.custom_api.api_client.configuration.host, KUBE_CREDENTIALS):
        client.create_experiment(experiment, namespace)
    progress(f"{prefix}: Katib Experiment {namespace}/{name} created, {trials} trials; waiting")
    timeout = int(use_case.tuning.timeout_seconds or DEFAULT_TIMEOUT_SECONDS)
    finished = _wait(client, name, namespace, timeout, prefix, progress)
    optimal = client.get_optimal_hyperparameters(name, namespace)
    if optimal is None:
        raise KatibError(f"Katib Experiment {namespace}/{name} finished without a successful trial")
    try:
        succeeded = client.get_success_trial_details(name, namespace)
    except (RuntimeError, TimeoutError) as error:
        raise KatibError(f"Katib Experiment {namespace}/{name}: {error}") from None
    space = search_space(family, use_case.task, use_case.tuning)
    metric, direction = objective_metric(use_case.task, use_case.tuning.metric)
    best = katib_trial(optimal.parameter_assignments, optimal.observation.metrics, space, metric, direction)
    others = [katib_trial(t["parameter_assignments"], t["metrics"], space, metric, direction)
              for t in succeeded if t["name"] != optimal.best_trial_name]
    status = finished.status
    shown = best.valid_score if direction == "maximize" else -best.valid_score
    progress(f"{prefix}: Katib's best trial {optimal.best_trial_name}: {metric} {shown:.4f}")
    _delete(client, name, namespace, prefix, progress)  # read: its Trials go with it; a failed one stays
    return SearchResult(
        family=family, params=best.params, valid_score=best.valid_score, iterations=best.iterations,
        trials=int(status.trials or 0) if status else trials,
        stopped_early=int(status.trials_early_stopped or 0) if status else 0, backend="katib", metric=metric,
        runners_up=[asdict(t) for t in sorted(others, key=lambda t: -t.valid_score)],
    )


def _wait(client, name: str, namespace: str, timeout: int, prefix: str, progress: Callable[[str], None]):
    """The Experiment once it has succeeded. Past `timeout` seconds it is deleted (still running, it would go on
    starting trials after the step has failed); KatibError then, or when it failed (it stays, to look into).
    The SDK raises TimeoutError for its own deadline and for one slow API answer alike, so the deadline is kept
    here, and a slow answer before it is waited out."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            return client.wait_for_experiment_condition(name, namespace, timeout=max(1, math.ceil(remaining)),
                                                        polling_interval=POLL_SECONDS)
        except TimeoutError:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        except RuntimeError as error:
            raise KatibError(f"Katib Experiment {namespace}/{name}: {error}") from None
    _delete(client, name, namespace, prefix, progress)
    raise KatibError(f"Katib Experiment {namespace}/{name} did not finish within tuning.timeout_seconds "
                     f"({timeout} s), and was deleted")


def _delete(client, name: str, namespace: str, prefix: str, progress: Callable[[str], None]) -> None:
    """Delete the Experiment and its Trials (the pipeline runner may delete Experiments); a failure is a warning."""
    try:
        client.delete_experiment(name, namespace)
    except (RuntimeError, TimeoutError) as error:
        progress(f"{prefix}: warning: {error}; delete it with `kubectl -n {namespace} delete experiment {name}`")


def katib_trial(assignments, metrics, space: SearchSpace, metric: str, direction: str) -> Trial:
    """A Katib trial's parameters (typed by `space`), its early-stopped rounds, and its score, higher better."""
    observed = {m.name: float(m.latest) for m in metrics}
    score = observed[metric] if direction == "maximize" else -observed[metric]
    return Trial(space.parse({a.name: a.value for a in assignments}), int(observed.get(ITERATIONS_METRIC, 1)), score)
