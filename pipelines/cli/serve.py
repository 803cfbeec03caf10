"""`flowline serve`: the one way to start a server, locally and in the container.

The model server (one or more packages, optionally a local A/B canary) or, with
--drift-monitor, a package's drift monitor, whose on-drift action (retraining) is built
here and handed to it, so the servers never import the pipelines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowline.inference_services.options import (
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_HOST,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_EXPLAIN_ROWS,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_PORT,
    HOST_ENV,
)
from flowline.pipelines.cli.cluster import add_image_argument
from flowline.pipelines.cli.common import EXIT_ERROR, UsageError, add_runs_dir_argument, default_online_store
from flowline.pipelines.retraining import DEFAULT_COOLDOWN_S, MODES


def add_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="serve model packages with the KServe model server, or a package's drift monitor",
        description="Serve model packages (v1 and v2 protocols) or, with --drift-monitor, a package's drift monitor. "
                    "The container's entry point: the ServingRuntimes run `flowline serve NAME=/mnt/models`.")
    serve.add_argument("targets", nargs="+", metavar="[NAME=]PACKAGE_DIR|USE_CASE|VERSION",
                       help="a package folder or s3://bucket/prefix, a use case (name or YAML path) whose newest "
                            "local package is served, or a package version (or its unique prefix) in --runs-dir; "
                            "NAME= names the model (default: the package's use case, with -drift for a monitor)")
    add_runs_dir_argument(serve, "where to look for a use case's runs, and where --on-drift local's runs go")
    server = serve.add_argument_group("server")
    server.add_argument("--host", default=None, help=f"bind address (default: ${HOST_ENV} or {DEFAULT_HOST})")
    server.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    server.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help=f"model server: largest batch a request may carry (default {DEFAULT_MAX_BATCH})")
    server.add_argument("--max-explain-rows", type=int, default=DEFAULT_MAX_EXPLAIN_ROWS,
                        help="model server: most rows an explain request may carry; an explain costs up to 0.15 s "
                             "a row (fraud-claims' CatBoost) and runs one at a time per worker "
                             f"(default {DEFAULT_MAX_EXPLAIN_ROWS})")
    server.add_argument("--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_MS,
                        help="model server: concurrent requests to the same package version wait at most this long "
                             "to share one transform and one predict (a lone request does not wait; each keeps its "
                             f"own answer, id, metrics and log line); 0 turns batching off (default {DEFAULT_BATCH_WAIT_MS})")
    server.add_argument("--max-batch-rows", type=int, default=DEFAULT_MAX_BATCH_ROWS,
                        help="model server: a shared batch closes at this many rows "
                             f"(default {DEFAULT_MAX_BATCH_ROWS})")
    server.add_argument("--max-body-mb", type=float, default=DEFAULT_MAX_BODY_MB,
                        help="a request's body above this many MiB is refused with 413, none of it kept "
                             f"(default {DEFAULT_MAX_BODY_MB})")
    server.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs)")
    server.add_argument("--workers", type=int, default=None,
                        help="worker processes answering on the one port; 0: one per CPU the container may use, "
                             "from its cgroup CPU quota, else the CPUs this process may run on (model server "
                             "default: 0; drift monitor default: 1, one window of the whole stream; with N each "
                             "worker tests windows of the events it receives); 1 serves from this process. A "
                             "number, not a word: KServe reads --workers from the command line as a number too")

    ab = serve.add_argument_group("local A/B (model server)")
    ab.add_argument("--canary", metavar="[NAME=]PACKAGE_DIR|USE_CASE|VERSION",
                    help="a second package for the model NAME, taking --canary-percent of its requests by request id "
                         "(KServe's canaryTrafficPercent, locally)")
    ab.add_argument("--canary-percent", type=int, default=10, help="the canary's share of requests (default 10)")
    online = serve.add_argument_group("online entity features (model server)")
    online.add_argument("--online-store", metavar="URL",
                        help="where entity features read and served rows append events: redis://HOST:PORT/DB, "
                             "sqlite:///PATH.db or memory:// (default: sqlite under RUNS_DIR, online-store.db; "
                             "opened only for a package with entity features, or with customer rows (CLV), which then "
                             "scores a customer by id from its transactions)")
    ab.add_argument("--prediction-log", help="append one JSON line per answered request (request id, arm, version) "
                                             "here, to join outcomes back by request id")

    drift = serve.add_argument_group("drift monitor")
    drift.add_argument("--drift-monitor", action="store_true",
                       help="serve the package's drift monitor (KServe payload-log CloudEvents in) instead of its model")
    drift.add_argument("--on-drift", choices=MODES, default="off",
                       help="on a drifted window: start `flowline run` here (local), submit a KFP run (kfp), "
                            "or only alert (off, the default)")
    drift.add_argument("--retrain-use-case", help="the use case to retrain, a name or YAML path (default: the "
                                                  "monitored package's use case)")
    drift.add_argument("--retrain-trials", type=int, default=0,
                       help="tuning trials per family (default: the use case's budget)")
    drift.add_argument("--kfp-host", default="", help="the KFP API, for --on-drift kfp")
    drift.add_argument("--retrain-source", default="", help="for --on-drift kfp: where the run reads its data, "
                                                            "s3://BUCKET/KEY or an http(s) URL (default: the use "
                                                            "case's own, when it is one of those)")
    drift.add_argument("--experiment", default="", help="for --on-drift kfp: the KFP experiment "
                                                        "(default: flowline-USE_CASE)")
    add_image_argument(drift, "for --on-drift kfp: the retraining run's image", "--retrain-image")
    drift.add_argument("--audit-log", help="where triggers are recorded (default: RUNS_DIR/audit.jsonl; "
                                           "s3://bucket/prefix on a cluster)")
    drift.add_argument("--retrain-cooldown", type=float, default=DEFAULT_COOLDOWN_S,
                       help=f"seconds after a retraining starts before another may (default {DEFAULT_COOLDOWN_S})")
    serve.set_defaults(handler=_serve)


def _named(target: str, runs: str) -> tuple[str, str]:
    """[NAME=]TARGET to (model name, package path); without NAME, the package's use case names it."""
    from flowline.inference_services.options import named_package
    from flowline.registry import resolve_package

    name, separator, where = target.partition("=")
    if not separator:
        name, where = "", target
    path = resolve_package(where, runs)
    return (name, path) if name else named_package(path)


def _serve(args: argparse.Namespace) -> int:
    from flowline.inference_services.options import default_host, repository_token
    from flowline.inference_services.server import serve
    from flowline.inference_services.workers import exec_supervisor

    try:
        repository_token()  # the environment's token, checked before any package loads
    except ValueError as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    workers = _workers(args)
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: give 1 to 65535")
    if not args.max_body_mb > 0:
        raise UsageError(f"--max-body-mb {args.max_body_mb:g}: give a positive size")
    max_body_bytes = int(args.max_body_mb * 2**20)
    models = _drift_monitor(args) if args.drift_monitor else _model_server(args)
    for model in models:
        print(f"flowline: serving {model.package_path} as {model.name!r}")
    if workers > 1:  # this process becomes the supervisor of the workers (inference_services/workers.py)
        exec_supervisor(models, args.host or default_host(), args.port, args.access_log, workers, max_body_bytes)
    return serve(models, args.host, args.port, args.access_log, max_body_bytes)


def _workers(args: argparse.Namespace) -> int:
    """--workers, checked, 0 being one per CPU the container may use; the default: that for the model server, 1 for
    the drift monitor (one window of the whole stream; with several, each worker tests its own). A retraining drift
    monitor runs one worker: with 0 (the ServingRuntime's), as if given 1."""
    from flowline.inference_services.options import default_workers

    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers {args.workers}: give 0 (one per CPU) or more")
    asked = args.workers if args.workers is not None else (1 if args.drift_monitor else 0)
    retraining = args.drift_monitor and args.on_drift != "off"
    workers = asked or (1 if retraining else default_workers())
    if retraining and workers > 1:
        raise UsageError(f"--workers {asked} with --on-drift {args.on_drift}: every worker would retrain "
                         "on its own windows, each with its own cooldown; give --workers 1")
    return workers


def _model_server(args: argparse.Namespace) -> list:
    from flowline.inference_services.model import FlowlineModel

    if args.on_drift != "off":
        raise UsageError("--on-drift: only with --drift-monitor")
    if not args.batch_wait_ms >= 0:
        raise UsageError(f"--batch-wait-ms {args.batch_wait_ms:g}: give 0 (batching off) or more milliseconds")
    if args.max_batch_rows < 1:
        raise UsageError(f"--max-batch-rows {args.max_batch_rows}: give at least 1")
    if args.max_batch < 1:
        raise UsageError(f"--max-batch {args.max_batch}: give at least 1")
    if args.max_explain_rows < 1:
        raise UsageError(f"--max-explain-rows {args.max_explain_rows}: give at least 1")
    packages = [_named(target, args.runs_dir) for target in args.targets]
    canary_name, canary_path = _named(args.canary, args.runs_dir) if args.canary else (None, None)
    if canary_name and canary_name not in {name for name, _ in packages}:
        raise UsageError(f"--canary {canary_name}: no model of that name is served")
    store = args.online_store or default_online_store(args.runs_dir)
    return [FlowlineModel(name, path, args.max_batch, canary_path=canary_path if name == canary_name else None,
                          canary_percent=args.canary_percent, prediction_log=args.prediction_log, online_store=store,
                          batch_wait_ms=args.batch_wait_ms, max_batch_rows=args.max_batch_rows,
                          max_explain_rows=args.max_explain_rows)
            for name, path in packages]


def _drift_monitor(args: argparse.Namespace) -> list:
    from flowline.inference_service import drift_monitor_name
    from flowline.inference_services.drift_monitor import DriftMonitor

    if len(args.targets) != 1:
        raise UsageError(f"--drift-monitor: give one package, not {len(args.targets)}")
    if args.canary or args.prediction_log:
        raise UsageError("--canary and --prediction-log: only for the model server, not with --drift-monitor")
    if args.online_store:
        raise UsageError("--online-store: only for the model server, not with --drift-monitor")
    (target,) = args.targets
    name, path = _named(target, args.runs_dir)
    if "=" not in target:
        name = drift_monitor_name(name)
    return [DriftMonitor(name, path, _retraining(args, path))]


def _retraining(args: argparse.Namespace, package: str):
    """The monitor's on-drift action: a retraining run (pipelines/retraining.py), or None when off. What could
    never start a run is refused now: a use case the run cannot find, or (kfp) data a cluster cannot read."""
    if args.on_drift == "off":
        return None
    from flowline.audit import AUDIT_FILE
    from flowline.pipelines.retraining import RetrainingAction
    from flowline.use_case import UseCase, UseCaseError
    from flowline.use_case_loader import built_in_use_cases, cluster_source, load_use_case

    target, use_case_file = args.retrain_use_case, Path(package) / "use_case.json"
    if not target and use_case_file.is_file():  # (an s3:// package is read later, by the monitor)
        packaged = UseCase.model_validate_json(use_case_file.read_text())
        target = (packaged.transaction_log or packaged).name  # a customer-rows package retrains from its log
        if target not in built_in_use_cases():
            raise UsageError(f"--on-drift {args.on_drift}: the package's use case {target!r} is not built in, "
                             "so a retraining run could not find it: give --retrain-use-case PATH (its YAML)")
    if args.on_drift == "kfp" and target:
        try:
            cluster_source(load_use_case(target), args.retrain_source)
        except UseCaseError as error:
            raise UsageError(f"--on-drift kfp: {error}") from None
    try:
        action = RetrainingAction(
            args.on_drift, args.retrain_use_case or "", args.audit_log or str(Path(args.runs_dir) / AUDIT_FILE),
            args.runs_dir, args.retrain_trials, args.kfp_host, args.experiment, args.retrain_cooldown,
            source=args.retrain_source, image=args.retrain_image)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return action.on_drift
