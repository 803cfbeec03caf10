"""Submitting a use case's pipeline (or its batch-scoring pipeline) to Kubeflow Pipelines with kfp.Client:
one run, or a recurring run.

The pipeline is compiled (with its exit handler) to a temporary file and handed to the
client, which creates or reuses the experiment. kfp.Client is real code: the tests check
it up to the requests it sends, against a stand-in API server on loopback.
"""

from __future__ import annotations

import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from flowline.cluster import AUTH_STATUSES, PIPELINE_SERVICE_ACCOUNT, ClusterError, talking_to
from flowline.pipelines.batch_pipeline import compile_batch_pipeline
from flowline.pipelines.template import compile_pipeline
from flowline.tuning import BACKENDS
from flowline.use_case import MAX_TRIALS, UseCase

KFP_API = "/apis/v2beta1"  # the KFP API version kfp.Client 2 speaks
BATCH_PARAMETERS = ("package_uri", "input_uri")  # what a batch-scoring run cannot do without
# The values a training run's inputs take, checked before anything is sent: a bad one failed late, at the
# tune step (the backend) or at the very last, deploy (canary_percent), after the whole training.
PARAMETER_RANGES = {
    "canary_percent": (lambda value: 0 <= value <= 100, "0 to 100"),
    "trials": (lambda value: 0 <= value <= MAX_TRIALS, f"0 (the use case's budget) to {MAX_TRIALS:,}"),
    "tuning_backend": (lambda value: value in ("", *BACKENDS), "auto, optuna or katib (empty: the use case's)"),
}


class SubmissionError(ValueError):
    """The submission cannot be built: a bad schedule or parameter."""


class SubmissionWarning(UserWarning):
    """A training run will do what its submitter may not expect (no champion to beat, another namespace)."""


def kfp_cron(schedule: str) -> str:
    """KFP's six-field cron (seconds first) from a standard five-field one; six fields pass unchanged."""
    fields = schedule.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return " ".join(fields)
    raise SubmissionError(f"schedule {schedule!r}: give a cron expression of 5 fields (minute hour day month "
                          "weekday) or KFP's 6 (seconds first)")


def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs, as text: `typed_parameters` gives each the type of the pipeline input it names."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise SubmissionError(f"parameter {pair!r}: give NAME=VALUE")
        parameters[name] = value
    return parameters


def typed_parameters(package: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """`parameters` checked against the compiled pipeline's inputs (KFP IR, root.inputDefinitions): a name it
    lacks, or text that is not of its input's type, is a SubmissionError before anything is sent."""
    import json

    import yaml

    spec = next(yaml.safe_load_all(Path(package).read_text()))  # the pipeline spec; a platform spec may follow
    inputs = (spec["root"].get("inputDefinitions") or {}).get("parameters", {})
    typed = {}
    for name, value in parameters.items():
        if name not in inputs:
            raise SubmissionError(f"--param {name}: the pipeline has no input {name!r} (inputs: {', '.join(sorted(inputs))})")
        kind = inputs[name]["parameterType"]
        if not isinstance(value, str) or kind == "STRING":
            if not _of_kind(value, kind):
                raise SubmissionError(f"parameter {name}: expected {kind.lower().replace('_', ' ')}, got "
                                      f"{type(value).__name__} {value!r}")
            typed[name] = value
            continue
        try:
            typed[name] = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float,
                           "BOOLEAN": _boolean}.get(kind, json.loads)(value)
        except ValueError:
            raise SubmissionError(f"--param {name}: expected {kind.lower().replace('_', ' ')}, got {value!r}") from None
    for name, value in typed.items():
        allowed, said = PARAMETER_RANGES.get(name, (lambda _: True, ""))
        if not allowed(value):
            raise SubmissionError(f"--param {name}: expected {said}, got {value!r}")
    return typed


def submission_warnings(use_case: UseCase, parameters: dict[str, Any], namespace: Optional[str],
                        batch: bool) -> list[str]:
    """What a training run will do that its submitter may not expect, warned before it is sent."""
    if batch:
        return []
    said = []
    if parameters.get("tuning_backend") == "optuna" and use_case.tuning.backend != "optuna":
        said.append("tuning_backend=optuna: the search steps were compiled to wait for Katib's trial pods, with "
                    "small requests (template.RESOURCES['katib-wait']); the trials now run in them on what the "
                    "node has spare. Set tuning.backend: optuna in the use case to size them for it")
    if not parameters.get("champion"):
        said.append("no champion given (--param champion=s3://...): the run compares its model with none, so any "
                    "model that passes its gates is deployed (as a canary where one serves); give the package "
                    "serving now, s3://flowline-models/NAME/VERSION")
    if namespace and parameters.get("namespace", "flowline") != namespace:
        said.append(f"the run deploys and searches in namespace {parameters.get('namespace', 'flowline')!r} (its "
                    f"namespace input), not the profile namespace {namespace!r}: --param namespace={namespace} "
                    "acts there")
    return said


def _of_kind(value: Any, kind: str) -> bool:
    """Whether a Python value (a notebook's, not a command line's text) fits a KFP input's parameterType."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"STRING": isinstance(value, str), "NUMBER_INTEGER": number and float(value).is_integer(),
            "NUMBER_DOUBLE": number, "BOOLEAN": isinstance(value, bool)}.get(kind, True)


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def check_reachable(host: str, token: Optional[str] = None, timeout: float = 10.0) -> None:
    """One GET of the KFP API's health check, where kfp.Client retries a refused one five times, 5 s apart,
    logging each. Raises at once: urllib's URLError (unreachable) or HTTPError (401, 403), which `talking_to` says
    in a line, or a ClusterError for any other answer than 2xx, as a wrong port-forward or a KFP API not ready
    gives (a 404 or a 503 naming neither KFP nor the URL, else)."""
    url = f"{host.rstrip('/')}{KFP_API}/healthz"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except urllib.error.HTTPError as error:
        if error.code in AUTH_STATUSES:
            raise
        raise ClusterError(f"KFP at {host} answered {error.code} {error.reason} to {url}: is this the address of "
                           "the KFP API (or of the Pipelines UI before it), and is it up?") from None


FINAL_RUN_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}


def run_finished(host: str, run_id: str, token: Optional[str] = None) -> bool:
    """Whether the KFP run `run_id` has ended (its state is a final one)."""
    import kfp

    check_reachable(host, token)
    state = kfp.Client(host=host, existing_token=token).get_run(run_id).state
    return str(state) in FINAL_RUN_STATES


def submit(
    use_case: UseCase,
    host: str,
    experiment: Optional[str] = None,
    schedule: Optional[str] = None,
    parameters: Optional[dict[str, Any]] = None,
    caching: bool = True,
    namespace: Optional[str] = None,
    token: Optional[str] = None,
    source: str = "",
    image: str | None = None,
    batch: bool = False,
    service_account: str = PIPELINE_SERVICE_ACCOUNT,
    replace: bool = False,
) -> dict:
    """Compile `use_case`'s pipeline and submit it to the KFP API at `host`: a run, or with `schedule`
    (cron) a recurring run, in `experiment` (default flowline-NAME). `caching` False runs every step
    afresh; True keeps each step's compiled choice (template.NOT_CACHED). The run reads its data from `source`
    or the use case's own remote data (template.compile_pipeline); every step runs in `image` (default:
    flowline.default_image(), $FLOWLINE_IMAGE or the project's image). With `batch`,
    the pipeline is the batch-scoring one (batch_pipeline.py), whose `parameters` must name the package and
    the input (package_uri, input_uri). The run's pods run as `service_account`, which kustomize/ gives the
    rights the deploy and tune steps need in its namespace (KFP's default account has none there). A recurring
    run of the same name in the experiment is refused (it would train, and deploy, twice a period), or with
    `replace` deleted first. Returns the ids and the run's link."""
    import kfp

    cron = kfp_cron(schedule) if schedule else None
    for line in submission_warnings(use_case, parameters or {}, namespace, batch):
        warnings.warn(line, SubmissionWarning, stacklevel=2)
    if batch:
        missing = [name for name in BATCH_PARAMETERS if not (parameters or {}).get(name)]
        if missing:
            raise SubmissionError(f"a batch-scoring run needs {', '.join(f'--param {name}=...' for name in missing)}")
    name = f"flowline-{use_case.name}" + ("-batch" if batch else "")
    experiment = experiment or f"flowline-{use_case.name}"
    if urllib.parse.urlparse(host).scheme not in ("http", "https"):
        raise SubmissionError(f"KFP host {host!r}: give its URL with the scheme, for example http://{host}")
    with tempfile.TemporaryDirectory() as folder, \
            talking_to("KFP", host, "the bearer token in $KFP_TOKEN"), warnings.catch_warnings():
        # kfp.Client warns each time it is made that it needs KFP 2.0.0-beta.2 or later: noise, as submit speaks
        # only that API (v2beta1) and says so when it cannot reach it
        warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline")
        package = str(Path(folder) / f"{name}.yaml")
        if batch:
            compile_batch_pipeline(use_case, package, image)
        else:
            compile_pipeline(use_case, package, caching, source, image)
        parameters = typed_parameters(package, parameters or {})  # refused before the client sends anything
        check_reachable(host, token)
        client = kfp.Client(host=host, namespace=namespace, existing_token=token)
        experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
        if cron:  # KFP names each run of it after the recurring run and its own time
            existing = [found for found in client.list_recurring_runs(experiment_id=experiment_id,
                                                                      page_size=100).recurring_runs or []
                        if found.display_name == name]
            if existing and not replace:
                raise SubmissionError(
                    f"experiment {experiment!r} has a recurring run {name!r} already "
                    f"({', '.join(found.recurring_run_id for found in existing)}): a second would train and deploy "
                    "twice a period; pass --replace to delete it first, or delete it in the Pipelines UI")
            for found in existing:
                client.delete_recurring_run(found.recurring_run_id)
            recurring = client.create_recurring_run(
                experiment_id, name, cron_expression=cron, pipeline_package_path=package,
                params=parameters, max_concurrency=1, no_catchup=True, service_account=service_account)
            return {"experiment_id": experiment_id, "recurring_run_id": recurring.recurring_run_id, "cron": cron,
                    "replaced": [found.recurring_run_id for found in existing]}
        # A run named by its time (UTC), so the experiment's runs list tells them apart.
        run = client.run_pipeline(experiment_id, f"{name} {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}",
                                  pipeline_package_path=package, params=parameters, service_account=service_account)
    return {"experiment_id": experiment_id, "run_id": run.run_id,
            "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}"}
