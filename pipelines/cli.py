"""The `flowline` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from flowline import __version__, audit
from flowline.storage import StorageError, is_s3
from flowline.inference_services.options import add_server_arguments

EXIT_ERROR = 1
EXIT_GATE_FAILED = 3
AUDIT_ACTIONS = {"promote": "promotion", "rollback": "rollback"}


def _runs_dir() -> str:
    return os.environ.get("FLOWLINE_RUNS_DIR", "runs")


def _add_audit_log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audit-log", default=str(Path(_runs_dir()) / "audit.jsonl"),
                        help="the audit log to record this in: a file, or s3://bucket/prefix on a cluster (default: "
                             "$FLOWLINE_RUNS_DIR/audit.jsonl or runs/audit.jsonl)")


def _add_use_case_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("use_case_name", nargs="?", metavar="USE_CASE", help="a built-in use case, e.g. churn")
    parser.add_argument("--use-case", dest="use_case_path", metavar="PATH", help="a use-case YAML file")


def _add_cluster_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="where the cluster run reads the data: s3://BUCKET/KEY or an http(s) URL "
                                         "(default: the use case's, when it is one of those)")
    parser.add_argument("--upload-data", metavar="S3_PREFIX",
                        help="upload the use case's local file (or --source's) to s3://BUCKET/PREFIX first, "
                             "and read it from there")


def _use_case(args: argparse.Namespace):
    from flowline.use_case import load_use_case

    return load_use_case(args.use_case_path or args.use_case_name)


def _run(args: argparse.Namespace) -> int:
    from flowline.pipelines.local_run import format_summary, run_local

    try:
        champion = "" if args.no_champion else args.champion
        summary = run_local(
            _use_case(args), args.runs_dir, args.trials, args.source or "", args.summary, args.verbose, champion,
            args.tuning_backend or "",
        )
    except RuntimeError as error:
        print(f"flowline: run failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(format_summary(summary))
    print(f"\nsummary: {summary['summary_path']}")
    return 0 if summary["gates_passed"] else EXIT_GATE_FAILED


def _cluster_source(args: argparse.Namespace, use_case) -> str:
    """Where the cluster run reads the data: --source, or with --upload-data the use case's own file,
    uploaded there first (a source already in object storage or at a URL is not uploaded)."""
    from flowline.use_case import REMOTE_PREFIXES

    if not args.upload_data:
        return args.source or ""
    from flowline import storage
    from flowline.contract import resolve_source

    local = resolve_source(use_case, args.source or "")
    if local.startswith(REMOTE_PREFIXES):
        return local
    destination = storage.S3Location.parse(args.upload_data).uri(Path(local).name)
    storage.upload_file(local, destination)
    print(f"uploaded {local} to {destination}")
    return destination


def _compile(args: argparse.Namespace) -> int:
    if args.image:
        os.environ["FLOWLINE_IMAGE"] = args.image  # read when the components are first imported
    from flowline.pipelines.template import compile_pipeline

    use_case = _use_case(args)
    compile_pipeline(use_case, args.output, source=_cluster_source(args, use_case))
    print(f"compiled: {args.output}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    if args.image:
        os.environ["FLOWLINE_IMAGE"] = args.image  # read when the components are first imported
    from flowline.pipelines.submission import SubmissionError, parse_parameters, submit

    try:
        parameters = parse_parameters(args.param)
        if args.audit_log:
            parameters["audit_log"] = args.audit_log
        use_case = _use_case(args)
        submitted = submit(use_case, args.host, args.experiment, args.schedule, parameters,
                           not args.no_cache, args.namespace, os.environ.get("KFP_TOKEN"),
                           _cluster_source(args, use_case))
    except SubmissionError as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    if "recurring_run_id" in submitted:
        print(f"recurring run {submitted['recurring_run_id']} ({submitted['cron']}) in experiment "
              f"{submitted['experiment_id']}")
    else:
        print(f"run {submitted['run_id']} in experiment {submitted['experiment_id']}: {submitted['url']}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    """A destination that is not s3:// is a StorageError, which main() reports."""
    from flowline import storage
    from flowline.package.format import MANIFEST_FILE
    from flowline.package.remote import upload_package

    if (Path(args.source) / MANIFEST_FILE).is_file():
        manifest = upload_package(args.source, args.destination)
        print(f"uploaded package {manifest['name']} {manifest['version']} ({len(manifest['files'])} files, "
              f"verified) to {args.destination}")
        return 0
    if not Path(args.source).is_file():
        print(f"flowline: {args.source} is neither a file nor a model package", file=sys.stderr)
        return EXIT_ERROR
    etag = storage.upload_file(args.source, args.destination)
    print(f"uploaded {args.source} to {args.destination} (ETag {etag})")
    return 0


def _download(args: argparse.Namespace) -> int:
    import shutil

    from flowline import storage
    from flowline.package.remote import download_package

    if args.package:
        cached = download_package(args.source)
        shutil.copytree(cached, args.destination)
        print(f"downloaded and verified the package at {args.source} into {args.destination}")
        return 0
    storage.download_file(args.source, args.destination)
    print(f"downloaded {args.source} to {args.destination}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from flowline.package.format import verify
    from flowline.package.signing import KEY_ENV, NoSigningKeyWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoSigningKeyWarning)
        manifest = verify(args.package)
    for warning in caught:
        print(f"flowline: warning: {warning.message}", file=sys.stderr)
    keyless = any(issubclass(warning.category, NoSigningKeyWarning) for warning in caught)
    signed = f"signature not checked: ${KEY_ENV} is unset" if keyless else "signature checked"
    print(f"verified: {args.package} ({manifest['name']} version {manifest['version']}, "
          f"{len(manifest['files'])} files, {signed})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from flowline.inference_services.model import FlowlineModel
    from flowline.inference_services.options import named_package
    from flowline.inference_services.server import serve

    name, path = named_package(_package_path(args.target, args.runs_dir))
    print(f"flowline: serving {path} as model {args.name or name!r}")
    serve([FlowlineModel(args.name or name, path, args.max_batch)], args.host, args.port, args.access_log)
    return 0


def _package_path(target: str, runs_dir: str) -> str:
    """A package folder as given, or the newest local run's package of a use case."""
    from flowline.pipelines.local_run import latest_package
    from flowline.use_case import load_use_case

    if Path(target).is_dir() or is_s3(target):
        return target
    return str(latest_package(runs_dir, load_use_case(target).name))


def _deploy(args: argparse.Namespace) -> int:
    from flowline.cluster import kubeconfig_available
    from flowline.deployment import deploy_package
    from flowline.package.format import verify

    package = _package_path(args.target, args.runs_dir)
    manifest = verify(package)
    name = args.name or manifest["name"]
    storage_uri = args.storage_uri or f"s3://flowline-models/{name}/{manifest['version']}"
    output = args.output or f"{name}-inferenceservice.yaml"
    apply_to_cluster = not args.render_only and kubeconfig_available(args.kubeconfig)
    outcome = deploy_package(package, storage_uri, args.namespace, output, apply_to_cluster,
                             args.canary_percent, name, args.kubeconfig)
    audit.append(args.audit_log, "deployment", {
        "inference_service": f"{args.namespace}/{outcome['name']}", "package": package,
        "package_version": manifest["version"], "storage_uri": storage_uri, "action": outcome["action"]})
    print(f"{outcome['name']}: {outcome['action']} ({outcome['manifest']})")
    return 0


def _canary_patch(args: argparse.Namespace) -> int:
    import yaml

    from flowline.canary import patch_inference_service
    from flowline.cluster import kubeconfig_available
    from flowline.inference_service import promoted, rolled_back

    operation = args.canary_action
    if args.manifest:
        change = promoted if operation == "promote" else rolled_back
        document = change(yaml.safe_load(Path(args.manifest).read_text()))
        Path(args.manifest).write_text(yaml.safe_dump(document, sort_keys=False))
        audit.append(args.audit_log, AUDIT_ACTIONS[operation], {"manifest": args.manifest})
        print(f"{operation}: {args.manifest} updated")
        return 0
    if not kubeconfig_available(args.kubeconfig):
        print("flowline: no kubeconfig found (give --kubeconfig, set KUBECONFIG, or use --manifest FILE)",
              file=sys.stderr)
        return EXIT_ERROR
    patch_inference_service(args.name, args.namespace, operation, args.kubeconfig)
    audit.append(args.audit_log, AUDIT_ACTIONS[operation], {"inference_service": f"{args.namespace}/{args.name}"})
    print(f"{operation}: {args.namespace}/{args.name}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    from flowline.erasure import ErasureError, erase_subject

    try:
        report = erase_subject(_use_case(args), args.id, args.runs_dir, args.audit_log)
    except ErasureError as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    for path, rows in report.rows_removed.items():
        print(f"erased {rows} row(s) from {path}")
    print(f"erased {report.total_rows} row(s) of subject sha256 {report.subject_sha256[:16]} in "
          f"{len(report.rows_removed)} file(s); recorded in {args.audit_log}")
    if report.packages_trained_on_subject:
        print("packages trained on this subject (retrain to forget it):")
        for package in report.packages_trained_on_subject:
            print(f"  {package}")
    else:
        print("no package was trained on this subject")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    try:
        records = audit.verify(args.log)
    except audit.AuditError as error:
        print(f"audit log TAMPERED: {error}")
        return EXIT_ERROR
    signed = (f"signed ({audit.KEY_ENV})" if os.environ.get(audit.KEY_ENV)
              else "UNSIGNED: tamper-evident against accidents only")
    print(f"audit log intact: {args.log}, {len(records)} records, last hash {records[-1]['hash'][:16]}, {signed}")
    return 0


def _audit_anchor(args: argparse.Namespace) -> int:
    """An AuditError (no log, one anchored already, a broken chain) is reported by main()."""
    last = audit.anchor(args.log)
    print(f"audit log anchored: {args.log}, {last['seq']} records checked, head at record {last['seq']} "
          f"({last['hash'][:16]})")
    return 0


def _katib(args: argparse.Namespace) -> int:
    if args.image:
        os.environ["FLOWLINE_IMAGE"] = args.image  # read when the components are first imported
    from flowline.components import base_image
    from flowline.katib import (
        ExperimentError,
        built_in_experiments,
        use_case_experiments,
        write_experiments,
    )

    try:
        if args.use_case_name or args.use_case_path:
            manifests = use_case_experiments(_use_case(args), base_image(), args.namespace, args.source or "")
        else:
            manifests, left_out = built_in_experiments(base_image(), args.namespace)
            for name, reason in left_out.items():
                print(f"left out: {name}: {reason}")
    except ExperimentError as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    for path in write_experiments(manifests, args.output):
        print(f"written: {path}")
    return 0


def _init(args: argparse.Namespace) -> int:
    from flowline.contract import ContractError
    from flowline.pipelines.scaffold import ScaffoldError, scaffold

    try:
        text = scaffold(args.data, args.label)
    except (ScaffoldError, ContractError) as error:
        print(f"flowline: init: {error}", file=sys.stderr)
        return EXIT_ERROR
    if not args.output:
        print(text, end="")
        return 0
    Path(args.output).write_text(text)
    print(f"wrote {args.output}: review the lines marked 'review', then run flowline validate {args.output}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from flowline.pipelines.scaffold import validate

    problems, notes = validate(args.file)
    for line in notes:
        print(f"note: {line}")
    for line in problems:
        print(f"problem: {line}", file=sys.stderr)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.file}: the use case fits its data")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from flowline.datasets import REGISTRY, DatasetError, data_home, dataset_path

    print(f"data home: {data_home()}")
    problems = 0
    for name in sorted(REGISTRY):
        try:
            dataset_path(name)
            print(f"  {name:28} ok")
        except DatasetError as error:
            problems += 1
            print(f"  {name:28} {error}")
    return EXIT_ERROR if problems else 0


def _ab_design(args: argparse.Namespace) -> int:
    from flowline.ab_testing import DesignError, days_needed, proportion_sample_size

    try:
        rows = proportion_sample_size(args.baseline_rate, args.mde, args.alpha, args.power)
        days = days_needed(rows, args.daily_rows_per_arm) if args.daily_rows_per_arm else None
    except DesignError as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    design = {"n_per_arm": rows, "n_total": 2 * rows, "baseline_rate": args.baseline_rate, "mde": args.mde,
              "alpha": args.alpha, "power": args.power, "test": "two-proportion z-test, two-sided", "days": days}
    if args.json:
        print(json.dumps(design))
        return 0
    print(f"{rows:,} rows per arm ({2 * rows:,} in all) to detect {args.baseline_rate:g} -> "
          f"{args.baseline_rate + args.mde:g} with a two-sided two-proportion z-test at alpha {args.alpha:g} and "
          f"power {args.power:g}" + (f"; {days} days at {args.daily_rows_per_arm:g} rows per arm a day" if days else ""))
    return 0


def _canary_analyze(args: argparse.Namespace) -> int:
    from flowline.ab_testing import CanaryPolicy, DesignError
    from flowline.canary import CanarySourceError, judge_canary, read_arms

    if (args.apply or args.prometheus) and not args.name:
        print("flowline: --apply and --prometheus need --name, the InferenceService", file=sys.stderr)
        return EXIT_ERROR
    policy = CanaryPolicy(min_requests=args.min_requests, max_error_ratio=args.max_error_ratio,
                          max_latency_ratio=args.max_latency_ratio, alpha=args.alpha, tau=args.tau)
    try:
        arms, source = read_arms(args.prometheus or "", args.name or "", args.predictions or "", args.outcomes or "")
        decided = judge_canary(arms, policy, args.audit_log, args.name, args.namespace, args.apply,
                               args.kubeconfig, source, args.value_per_success)
    except (DesignError, CanarySourceError) as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(decided, indent=1))
    print(f"canary: {decided['decision']}{' (applied)' if decided['applied'] else ''}: {decided['reason']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from flowline.ab_testing import CanaryPolicy

    parser = argparse.ArgumentParser(prog="flowline", description="Tabular models from raw data to KServe.")
    parser.add_argument("--version", action="version", version=f"flowline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a use case's pipeline locally through kfp.local")
    _add_use_case_arguments(run)
    run.add_argument("--trials", type=int, default=0,
                     help="tuning trials for every model family (default: the use case's budget)")
    run.add_argument("--tuning-backend", choices=("auto", "optuna", "katib"),
                     help="where trials run (default: the use case's tuning.backend; auto is Optuna off-cluster)")
    champion = run.add_mutually_exclusive_group()
    champion.add_argument("--champion", metavar="PACKAGE_DIR",
                          help="the package to beat (default: the newest promoted package of this use case in --runs-dir)")
    champion.add_argument("--no-champion", action="store_true", help="compare with no champion (promote if gates pass)")
    run.add_argument("--source", help="read the data from this path or URL instead of the use case's")
    run.add_argument("--runs-dir", default=_runs_dir(),
                     help="where run folders go (default: $FLOWLINE_RUNS_DIR or ./runs)")
    run.add_argument("--summary", help="write the JSON summary here (default: summary.json in the run folder)")
    run.add_argument("-v", "--verbose", action="store_true", help="show every task's full log, not just progress")
    run.set_defaults(handler=_run)

    compile_ = commands.add_parser("compile", help="compile a use case's pipeline to KFP IR YAML")
    _add_use_case_arguments(compile_)
    compile_.add_argument("-o", "--output", required=True, help="the YAML file to write")
    compile_.add_argument("--image", help="component image (default: $FLOWLINE_IMAGE or the project image)")
    _add_cluster_data_arguments(compile_)
    compile_.set_defaults(handler=_compile)

    submit = commands.add_parser(
        "submit", help="compile a use case's pipeline and submit a run (or, with --schedule, a recurring run) to KFP")
    _add_use_case_arguments(submit)
    submit.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8080 (port-forwarded "
                                                      "ml-pipeline-ui) or the in-cluster ml-pipeline service; "
                                                      "a bearer token, if needed, from $KFP_TOKEN")
    submit.add_argument("--experiment", help="the KFP experiment (default: flowline-USE_CASE; created if missing)")
    submit.add_argument("--schedule", metavar="CRON",
                        help="a recurring run on this cron schedule, e.g. '0 3 * * 1' (5 fields, or KFP's 6)")
    submit.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a pipeline input, e.g. trials=20 or champion=s3://... (repeatable)")
    submit.add_argument("--audit-log", help="the run's audit log on the cluster, s3://bucket/prefix")
    submit.add_argument("--no-cache", action="store_true", help="run every step, none from KFP's cache")
    submit.add_argument("--namespace", help="the Kubeflow profile namespace (multi-user deployments)")
    submit.add_argument("--image", help="component image (default: $FLOWLINE_IMAGE or the project image)")
    _add_cluster_data_arguments(submit)
    submit.set_defaults(handler=_submit)

    upload = commands.add_parser(
        "upload", help="put a file, or a model package (verified, manifest last), in object storage")
    upload.add_argument("source", help="a file (for example a dataset) or a package folder")
    upload.add_argument("destination", help="s3://bucket/key (a file) or s3://bucket/prefix (a package)")
    upload.set_defaults(handler=_upload)

    download = commands.add_parser(
        "download", help="get a file, or a model package (refused unless every file matches its manifest)")
    download.add_argument("source", help="s3://bucket/key, or s3://bucket/prefix with --package")
    download.add_argument("destination", help="the local file, or a new folder for the package")
    download.add_argument("--package", action="store_true", help="the source is a model package: verify it")
    download.set_defaults(handler=_download)

    verify = commands.add_parser("verify", help="check a model package: its files' sha256, its version and, "
                                                "with $FLOWLINE_SIGNING_KEY, its signature")
    verify.add_argument("package", help="the package folder")
    verify.set_defaults(handler=_verify)

    serve = commands.add_parser("serve", help="serve a model package with the KServe model server")
    serve.add_argument("target", metavar="PACKAGE_DIR|USE_CASE",
                       help="a package folder, or a use case whose newest local run is served")
    serve.add_argument("--name", help="model name (default: the use case's name)")
    serve.add_argument("--runs-dir", default=_runs_dir(),
                       help="where to look for a use case's runs (default: $FLOWLINE_RUNS_DIR or ./runs)")
    add_server_arguments(serve)
    serve.set_defaults(handler=_serve)

    deploy = commands.add_parser(
        "deploy", help="render a package's InferenceService; apply it when a kubeconfig is available")
    deploy.add_argument("target", metavar="PACKAGE_DIR|USE_CASE")
    deploy.add_argument("--name", help="InferenceService name (default: the use case's name)")
    deploy.add_argument("--storage-uri", help="where KServe finds the package (default: s3://flowline-models/NAME/VERSION)")
    deploy.add_argument("--namespace", default="flowline")
    deploy.add_argument("--canary-percent", type=int, default=10,
                        help="traffic for the new version when a champion is serving (default 10)")
    deploy.add_argument("-o", "--output", help="manifest file (default: NAME-inferenceservice.yaml)")
    deploy.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    deploy.add_argument("--render-only", action="store_true", help="write the manifest, do not apply it")
    deploy.add_argument("--runs-dir", default=_runs_dir())
    _add_audit_log_argument(deploy)
    deploy.set_defaults(handler=_deploy)

    katib = commands.add_parser(
        "katib", help="write Katib Experiment YAMLs (HPO and NAS) for a use case, or for every built-in one")
    katib.add_argument("use_case_name", nargs="?", metavar="USE_CASE", help="a built-in use case (default: all)")
    katib.add_argument("--use-case", dest="use_case_path", metavar="PATH", help="a use-case YAML file")
    katib.add_argument("-o", "--output", default=".", help="folder for the YAML files (default: .)")
    katib.add_argument("--image", help="trial image (default: $FLOWLINE_IMAGE or the project image)")
    katib.add_argument("--namespace", default="flowline")
    katib.add_argument("--source", help="the data URL trials read (default: the use case's URL or dataset source)")
    katib.set_defaults(handler=_katib, use_case_optional=True)

    erase = commands.add_parser(
        "erase", help="remove a data subject's rows from a use case's stored datasets and quarantine")
    erase.add_argument("use_case_name", nargs="?", metavar="USE_CASE", help="a built-in use case, e.g. churn")
    erase.add_argument("--use-case", dest="use_case_path", metavar="NAME|PATH",
                       help="a built-in use case name or a use-case YAML file")
    erase.add_argument("--id", required=True, help="the subject's id (the use case's first id column, or its entity)")
    erase.add_argument("--runs-dir", default=_runs_dir(), help="where the run folders are (default: ./runs)")
    _add_audit_log_argument(erase)
    erase.set_defaults(handler=_erase)

    audit_command = commands.add_parser("audit", help="the audit trail of runs, packages, gates and deployments")
    audit_actions = audit_command.add_subparsers(dest="audit_action", required=True)
    audit_check = audit_actions.add_parser(
        "verify", help="check the hash chain, the signatures ($FLOWLINE_AUDIT_KEY) and the head; exit 1 and name the "
                   "first bad line when the log is empty, or was edited, cut, extended or reordered")
    audit_check.add_argument("--log", default=str(Path(_runs_dir()) / "audit.jsonl"),
                             help="the log: a file, or s3://bucket/prefix (default: $FLOWLINE_RUNS_DIR/audit.jsonl or "
                                  "runs/audit.jsonl)")
    audit_check.set_defaults(handler=_audit_verify)
    audit_anchor = audit_actions.add_parser(
        "anchor", help="give a log written before heads existed its head, after checking its whole chain")
    audit_anchor.add_argument("--log", default=str(Path(_runs_dir()) / "audit.jsonl"),
                              help="the log: a file, or s3://bucket/prefix (default as for verify)")
    audit_anchor.set_defaults(handler=_audit_anchor)

    ab_command = commands.add_parser("ab", help="A/B tests between a champion and a challenger")
    ab_actions = ab_command.add_subparsers(dest="ab_action", required=True)
    ab_design = ab_actions.add_parser(
        "design", help="rows per arm for a two-proportion test (and days, given the traffic)")
    ab_design.add_argument("--baseline-rate", type=float, required=True, help="the champion's rate, e.g. 0.10")
    ab_design.add_argument("--mde", type=float, required=True,
                           help="the smallest absolute difference worth detecting, e.g. 0.02 for 10 %% -> 12 %%")
    ab_design.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    ab_design.add_argument("--power", type=float, default=0.8, help="chance to detect the effect (default 0.8)")
    ab_design.add_argument("--daily-rows-per-arm", type=float, help="traffic per arm per day, for the duration")
    ab_design.add_argument("--json", action="store_true", help='print {"n_per_arm": N, ...} as JSON')
    ab_design.set_defaults(handler=_ab_design)

    canary_command = commands.add_parser(
        "canary", help="judge a canary against its champion, and promote or roll it back")
    canary_actions = canary_command.add_subparsers(dest="canary_action", required=True)
    analyze = canary_actions.add_parser(
        "analyze", help="promote, hold or roll back: guardrails on errors and p99 latency, then a sequential test "
                        "of outcomes (always valid, however often it is run); recorded in the audit trail")
    source = analyze.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL",
                        help="read both versions' numbers from this Prometheus HTTP API (needs --name)")
    source.add_argument("--predictions", help="the server's --prediction-log (request id, arm, ...); needs --outcomes")
    analyze.add_argument("--outcomes",
                         help='JSON lines {"request_id": ..., "outcome": 1 or 0}, joined to the predictions by id')
    defaults = CanaryPolicy()
    analyze.add_argument("--min-requests", type=int, default=defaults.min_requests,
                         help=f"per arm before any decision (default {defaults.min_requests})")
    analyze.add_argument("--max-error-ratio", type=float, default=defaults.max_error_ratio,
                         help=f"roll back above this canary/champion error-rate ratio (default {defaults.max_error_ratio})")
    analyze.add_argument("--max-latency-ratio", type=float, default=defaults.max_latency_ratio,
                         help=f"roll back above this p99 latency ratio (default {defaults.max_latency_ratio})")
    analyze.add_argument("--alpha", type=float, default=defaults.alpha, help=f"default {defaults.alpha}")
    analyze.add_argument("--tau", type=float, default=defaults.tau,
                         help=f"the smallest difference in outcome rate worth acting on (default {defaults.tau})")
    analyze.add_argument("--value-per-success", type=float, default=0.0,
                         help="what one good outcome is worth (for churn, a retained customer: costs.false_negative, "
                              "500): adds the business impact per 1,000 requests")
    analyze.add_argument("--name", help="the InferenceService (its model's name in Prometheus); with --apply, "
                                        "promote or roll it back")
    analyze.add_argument("--namespace", default="flowline")
    analyze.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or the pod's service account")
    analyze.add_argument("--apply", action="store_true", help="patch the InferenceService on promote or rollback")
    _add_audit_log_argument(analyze)
    analyze.set_defaults(handler=_canary_analyze)
    for operation, text in (("promote", "give the canary all traffic (remove canaryTrafficPercent)"),
                            ("rollback", "send all traffic back to the champion (canaryTrafficPercent 0)")):
        command = canary_actions.add_parser(operation, help=text)
        command.add_argument("name", nargs="?", help="the InferenceService")
        command.add_argument("--namespace", default="flowline")
        command.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        command.add_argument("--manifest", help="edit this manifest file instead of the cluster")
        _add_audit_log_argument(command)
        command.set_defaults(handler=_canary_patch)

    init = commands.add_parser("init", help="draft a commented use-case YAML from a CSV or Parquet file")
    init.add_argument("data", metavar="DATA", help="a CSV or Parquet file: a path, an http(s) URL or s3://BUCKET/KEY")
    init.add_argument("--label", metavar="COLUMN", help="the column to predict (default: one named label, target, "
                                                        "class, y or outcome, else the last column)")
    init.add_argument("-o", "--output", metavar="FILE", help="the YAML file to write (default: print it)")
    init.set_defaults(handler=_init)

    validate = commands.add_parser("validate", help="check a use-case YAML against its data: schema, columns, "
                                                    "label values and every row; exit 1 naming every problem")
    validate.add_argument("file", metavar="FILE", help="the use-case YAML")
    validate.set_defaults(handler=_validate)

    datasets = commands.add_parser("datasets", help="list the registered datasets and check them in the data home")
    datasets.set_defaults(handler=_datasets)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings (an unsigned package or audit log) as one line a person reads, not a source listing."""
    return f"flowline: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    from flowline.package.format import PackageError
    from flowline.datasets import DatasetError
    from flowline.use_case import UseCaseError

    warnings.formatwarning = _one_line_warning
    warnings.filterwarnings("once", category=UserWarning)  # "not signed" once per command, not once per record
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "use_case_path"):
        given = bool(args.use_case_name) + bool(args.use_case_path)
        if given > 1 or (given == 0 and not getattr(args, "use_case_optional", False)):
            parser.error("give a built-in use case name or --use-case PATH (exactly one)")
    if getattr(args, "canary_action", None) in AUDIT_ACTIONS and not (args.name or args.manifest):
        parser.error(f"canary {args.canary_action}: give the InferenceService name, or --manifest FILE")
    try:
        return args.handler(args)
    except (UseCaseError, DatasetError, PackageError, StorageError, audit.AuditError, FileNotFoundError) as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
