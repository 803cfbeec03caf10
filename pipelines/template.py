"""The pipeline template: one KFP pipeline per use case, assembled from the components.

The use case is baked into the compiled pipeline as JSON, so a compiled YAML file is
self-contained. Gates are decided inside components (kfp.local has no dsl.If), so the
same pipeline runs locally and on the cluster.

Every task has resource requests, a retry policy with exponential backoff, and a caching
choice. The compiled pipeline wraps the steps in an exit handler that records the run's
outcome, success or failure, in the audit log and at the Broker. kfp.local cannot run exit
handlers, so `flowline run` records the outcome itself (local_run.py).
"""


from types import SimpleNamespace
from typing import Callable, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Model

from flowline import DEFAULT_IMAGE, audit, default_image, storage
from flowline.components import flowline_component
from flowline.components.bias.component import bias
from flowline.components.customers.component import customer_rows
from flowline.components.deploy.component import deploy
from flowline.components.drift.component import drift
from flowline.components.evaluate.component import evaluate, evaluate_regression
from flowline.components.explain.component import explain
from flowline.components.features.component import features
from flowline.components.ingest.component import ingest
from flowline.components.nas.component import nas
from flowline.components.package.component import package
from flowline.components.run_outcome.component import run_outcome
from flowline.components.search.component import search
from flowline.components.split.component import split
from flowline.components.train.component import train
from flowline.components.tune.component import tune
from flowline.customer_rows import customer_rows_use_case
from flowline.inference_service import BROKER_URL
from flowline.package import signing
from flowline.use_case import FAMILIES, UseCase
from flowline.use_case_loader import cluster_use_case

# What a run without the exit handler (kfp.local) returns: the package, and the rows ingest quarantined.
RunOutputs = NamedTuple("RunOutputs", [("package", Model), ("quarantine", Dataset)])
# The steps' plain functions; build_pipeline makes each a component in the image it is given.
STEP_FUNCTIONS = (ingest, customer_rows, split, features, tune, nas, search, train, evaluate, evaluate_regression,
                  bias, explain, drift, package, deploy, run_outcome)

# The families searched by tune steps; the MLP's architecture is searched by the nas step.
TUNED_FAMILIES = tuple(family for family in FAMILIES if family != "mlp")

# (CPU request, memory request) per task; training and searching use both cores. With the
# Katib backend the tune, nas and search steps only submit and wait: the trials get their own pods, so a
# cluster pipeline whose use case searches with Katib (backend auto or katib) asks "katib-wait" for them
# (fraud-claims' six waiting pods had reserved 12 CPUs and 24 GiB beside the trials they waited for).
RESOURCES = {
    "ingest": ("500m", "1Gi"),
    "customer-rows": ("1", "2Gi"),
    "split": ("500m", "1Gi"),
    "features": ("2", "2Gi"),
    "tune": ("2", "4Gi"),
    "nas": ("2", "4Gi"),
    "drift": ("1", "2Gi"),
    "train": ("2", "4Gi"),
    "evaluate": ("1", "2Gi"),
    "bias": ("1", "2Gi"),
    "explain": ("2", "2Gi"),
    "package": ("500m", "1Gi"),
    "deploy": ("250m", "512Mi"),
    "run-outcome": ("100m", "256Mi"),
    "katib-wait": ("250m", "512Mi"),
    "score": ("2", "4Gi"),
    # a tune or nas task of a family the use case does not search: it only writes that it was skipped
    "skipped": ("100m", "256Mi"),
}
RETRY = {"num_retries": 2, "backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}
# Steps whose result is not fixed by their inputs are never taken from KFP's cache: ingest
# reads a source whose content can change under the same URL (as does batch scoring), deploy and the exit
# handler act on the cluster, and the package names the run that built it in its lineage (its run id input
# differs every run anyway). Every other step is a function of its inputs and seeds. `flowline submit
# --no-cache` compiles with caching off for every step (kfp.Client's enable_caching reaches
# only the top-level tasks, not the steps inside the exit handler).
NOT_CACHED = {"ingest", "package", "deploy", "run-outcome", "score"}
# On a cluster every step gets the object store's Secret (storage.POD_SECRET); these steps also hold a key:
# the package step signs the package, deploy verifies it and records, the exit handler records.
SIGNING_KEY = {signing.POD_SECRET: {signing.POD_SECRET_KEY: signing.KEY_ENV}}
AUDIT_KEY = {audit.POD_SECRET: {audit.KEY_ENV: audit.KEY_ENV}}
STEP_SECRETS = {"package": SIGNING_KEY, "deploy": {**SIGNING_KEY, **AUDIT_KEY}, "run-outcome": AUDIT_KEY,
                "score": {**SIGNING_KEY, **AUDIT_KEY}}


def configure_task(task: dsl.PipelineTask, name: str, caching: bool, secrets: bool,
                   resources: str = "") -> dsl.PipelineTask:
    """A task's display name, resource requests (RESOURCES[`resources` or `name`]), retry policy and caching
    choice; with `secrets` (a cluster run), the object store's Secret and the step's keys (STEP_SECRETS)."""
    cpu, memory = RESOURCES[resources or name]
    task = (task.set_display_name(name).set_cpu_request(cpu).set_memory_request(memory).set_retry(**RETRY)
            .set_caching_options(caching and name not in NOT_CACHED))
    if secrets:
        from kfp import kubernetes

        kubernetes.use_secret_as_env(task, storage.POD_SECRET, {key: key for key in storage.POD_SECRET_KEYS})
        for secret, key_to_env in STEP_SECRETS.get(name, {}).items():
            kubernetes.use_secret_as_env(task, secret, key_to_env)
    return task


# The pipeline's inputs as the dashboard's run form and kfp.Client describe them (KFP reads the Args section).
PIPELINE_INPUTS = """The use case's pipeline.

Args:
    source: the data to read (s3://, http(s)://), instead of the data the pipeline was compiled with; empty: that.
    trials: trials per family, overriding the use case's budget (and a time budget) when above 0.
    tuning_backend: optuna, katib or auto (katib inside a cluster), overriding the use case's; empty: the use case's.
    champion: the package serving now, which the new model must beat (s3:// or a path); empty: none.
    namespace: where Katib Experiments run and the InferenceService is deployed.
    canary_percent: the share of traffic the new version takes while a champion serves.
    audit_log: where the deploy step and the run's outcome are recorded (s3://bucket/prefix); empty: nowhere.
    broker_url: the Knative Broker that gets the run's outcome as a CloudEvent; empty: none.
"""


def build_pipeline(use_case: UseCase, exit_handler: bool = False, caching: bool = True,
                   secrets: bool = False, image: str = DEFAULT_IMAGE) -> Callable:
    """Return the KFP pipeline for `use_case`, every step in `image` (the tune and nas steps also
    take it as an input: the image of their Katib trials).

    A transaction-log use case (`transactions`) gains a customer-rows step after ingest;
    every later step sees the customer rows' use case (customer_rows.py).

    A use case with a `tuning.time_budget` has one search step for every family in place of the tune
    and nas steps: it spends the budget across them (flowline/budget.py).

    The inputs are PIPELINE_INPUTS' (the dashboard's run form shows them; `namespace` and `canary_percent`
    apply in a cluster only, and a local run records its run, package and gate decision in the runs
    folder's log itself, whatever `audit_log` says). With `exit_handler`
    (the compiled pipeline; kfp.local cannot run one), a last task records the run's outcome
    in `audit_log` and posts it to the Broker at `broker_url`, whether the steps succeeded or not.
    With `secrets` (a cluster run), every task gets the object store's Secret (storage.POD_SECRET) as
    environment variables, and the steps that sign packages or write audit records their keys
    (STEP_SECRETS), through kfp-kubernetes' secret-as-env.
    """
    def _configure(task: dsl.PipelineTask, name: str, resources: str = "") -> dsl.PipelineTask:
        return configure_task(task, name, caching, secrets, resources)

    # On a cluster, auto searches with Katib: the search steps wait for trial pods, and ask for little.
    waits = secrets and use_case.tuning.backend != "optuna"

    def searching(step_name: str) -> str:
        return "katib-wait" if waits else step_name

    step = SimpleNamespace(**{func.__name__: flowline_component(func, image) for func in STEP_FUNCTIONS})
    raw_spec = use_case.model_dump_json()
    spec = customer_rows_use_case(use_case).model_dump_json() if use_case.transactions else raw_spec

    def steps(source: str, trials: int, tuning_backend: str, champion: str, namespace: str, canary_percent: int,
              audit_log: str) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
        """The steps from ingest to deploy; returns the ingest and package tasks."""
        ingested = _configure(step.ingest(use_case_json=raw_spec, source=source), "ingest")
        rows = ingested.outputs["dataset"]
        if use_case.transactions:
            rows = _configure(step.customer_rows(use_case_json=raw_spec, dataset=rows),
                              "customer-rows").outputs["rows"]
        splits = _configure(step.split(use_case_json=spec, dataset=rows), "split")
        fitted = _configure(
            step.features(use_case_json=spec, train=splits.outputs["train"], valid=splits.outputs["valid"],
                          trials=trials), "features")
        prepared = dict(train=splits.outputs["train"], valid=splits.outputs["valid"],
                        feature_set=fitted.outputs["feature_set"])
        search = dict(use_case_json=spec, trials=trials, backend=tuning_backend, namespace=namespace, source=source,
                      image=image, **prepared)
        if use_case.tuning.time_budget is None:
            # kfp.local has no optional inputs, so train takes every family's search: a family the use case does
            # not search gets a task that only says so, with the smallest requests.
            searched = set(use_case.tuning.families)
            searches = {family: _configure(step.tune(family=family, **search), f"tune-{family}",
                                           searching("tune") if family in searched else "skipped").outputs["best"]
                        for family in TUNED_FAMILIES}
            searches["mlp"] = _configure(step.nas(**search), "nas",
                                         searching("nas") if "mlp" in searched else "skipped").outputs["best"]
        else:  # one step spends the budget across the families
            searched = _configure(step.search(**search), "search", searching("tune"))
            searches = {family: searched.outputs[family] for family in FAMILIES}
        trained = _configure(
            step.train(use_case_json=spec, **prepared,
                       **{f"{family}_search": best for family, best in searches.items()}),
            "train",
        )
        evaluator = step.evaluate if use_case.task == "binary" else step.evaluate_regression
        evaluated = _configure(
            evaluator(
                use_case_json=spec, champion=champion, model=trained.outputs["model"],
                feature_set=fitted.outputs["feature_set"], holdout=trained.outputs["holdout"],
                test=splits.outputs["test"],
            ),
            "evaluate",
        )
        judged = _configure(
            step.bias(use_case_json=spec, model=trained.outputs["model"], feature_set=fitted.outputs["feature_set"],
                      holdout=trained.outputs["holdout"], test=splits.outputs["test"],
                      evaluation=evaluated.outputs["evaluation"]),
            "bias",
        )
        explained = _configure(
            step.explain(use_case_json=spec, model=trained.outputs["model"], feature_set=fitted.outputs["feature_set"],
                         train=splits.outputs["train"], test=splits.outputs["test"]),
            "explain",
        )
        monitored = _configure(
            step.drift(
                use_case_json=spec, train=splits.outputs["train"], valid=splits.outputs["valid"],
                feature_set=fitted.outputs["feature_set"],
            ),
            "drift",
        )
        packaged = _configure(
            step.package(
                use_case_json=spec, dataset=ingested.outputs["dataset"], train=splits.outputs["train"],
                valid=splits.outputs["valid"], model=trained.outputs["model"],
                feature_set=fitted.outputs["feature_set"], evaluation=judged.outputs["decided"],
                detector=monitored.outputs["detector"], explanation=explained.outputs["explanation"],
                feature_search=fitted.outputs["search_report"], evaluation_report=evaluated.outputs["report"],
                fairness_report=judged.outputs["html_report"],
                profile=ingested.outputs["profile"], run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, trials=trials, tuning_backend=tuning_backend,
            ),
            "package",
        )
        _configure(
            step.deploy(model_package=packaged.outputs["model_package"], namespace=namespace,
                        canary_percent=canary_percent, audit_log=audit_log),
            "deploy",
        )
        return ingested, packaged

    as_pipeline = dsl.pipeline(name=f"flowline-{use_case.name}", description=use_case.description or use_case.name)
    if not exit_handler:
        def local_pipeline(source: str = "", trials: int = 0, tuning_backend: str = "", champion: str = "",
                           namespace: str = "flowline", canary_percent: int = 10, audit_log: str = "") -> RunOutputs:
            ingested, packaged = steps(source, trials, tuning_backend, champion, namespace, canary_percent, audit_log)
            return RunOutputs(package=packaged.outputs["model_package"], quarantine=ingested.outputs["quarantine"])
        local_pipeline.__doc__ = PIPELINE_INPUTS
        return as_pipeline(local_pipeline)

    # KFP takes no pipeline output from inside an exit handler: the package is the package task's artifact.
    def pipeline(source: str = "", trials: int = 0, tuning_backend: str = "", champion: str = "",
                 namespace: str = "flowline", canary_percent: int = 10, audit_log: str = "",
                 broker_url: str = BROKER_URL):
        outcome = _configure(step.run_outcome(use_case_name=use_case.name, audit_log=audit_log, broker_url=broker_url,
                                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "run-outcome")
        with dsl.ExitHandler(outcome, name="steps"):
            steps(source, trials, tuning_backend, champion, namespace, canary_percent, audit_log)

    pipeline.__doc__ = PIPELINE_INPUTS
    return as_pipeline(pipeline)


def compile_pipeline(use_case: UseCase, output_path: str, caching: bool = True, source: str = "",
                     image: str | None = None) -> None:
    """Write the KFP IR YAML that the Kubeflow dashboard or kfp.Client runs (`caching` False: no step cached),
    every step in `image` (default: flowline.default_image(), $FLOWLINE_IMAGE or the project's image).

    The data is read where a pod can reach it, `source` or the use case's own (use_case_loader.cluster_source):
    compiling a use case whose data is only a file on this machine raises ClusterDataError. Every task
    gets the object store's endpoint and credentials from the Secret storage.POD_SECRET, and the steps
    that sign packages or write audit records their keys (STEP_SECRETS).
    """
    from kfp import compiler

    pipeline = build_pipeline(cluster_use_case(use_case, source), exit_handler=True, caching=caching,
                              secrets=True, image=image or default_image())
    compiler.Compiler().compile(pipeline, package_path=output_path)
