"""`flowline compile`, `submit`, `katib` and `deploy`: what runs on a Kubernetes cluster."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flowline import DEFAULT_IMAGE, IMAGE_ENV, audit, default_image
from flowline.pipelines.cli.common import (
    EXIT_ERROR,
    UsageError,
    add_audit_log_argument,
    add_runs_dir_argument,
    add_use_case_arguments,
    audit_log,
    use_case,
    use_case_to_run,
)
from flowline.cluster import (KUBE_CREDENTIALS, PIPELINE_SERVICE_ACCOUNT, kubeconfig_available, kubernetes_api,
                              talking_to)

OWNER_RUNS_DIR_HELP = "where a reused entity-feature definition's owner has its champion package"


def add_parser(commands: argparse._SubParsersAction) -> None:
    compile_ = commands.add_parser("compile", help="compile a use case's pipeline to KFP IR YAML")
    add_use_case_arguments(compile_)
    compile_.add_argument("-o", "--output", required=True, help="the YAML file to write")
    compile_.add_argument("--batch", action="store_true",
                          help="the batch-scoring pipeline instead (inputs package_uri, input_uri, as_of, audit_log)")
    add_image_argument(compile_, "every step's image")
    _add_cluster_data_arguments(compile_)
    add_runs_dir_argument(compile_, OWNER_RUNS_DIR_HELP)
    compile_.set_defaults(handler=_compile)

    submit = commands.add_parser(
        "submit", help="compile a use case's pipeline and submit a run (or, with --schedule, a recurring run) to KFP")
    add_use_case_arguments(submit)
    submit.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8080 (port-forwarded "
                                                      "ml-pipeline-ui) or the in-cluster ml-pipeline service; "
                                                      "a bearer token, if needed, from $KFP_TOKEN")
    submit.add_argument("--experiment", help="the KFP experiment (default: flowline-USE_CASE; created if missing)")
    submit.add_argument("--schedule", metavar="CRON",
                        help="a recurring run on this cron schedule, e.g. '0 3 * * 1' (5 fields, or KFP's 6); "
                             "refused when the experiment has one of the same name")
    submit.add_argument("--replace", action="store_true",
                        help="with --schedule: delete the experiment's recurring run of the same name first")
    submit.add_argument("--batch", action="store_true",
                        help="submit the batch-scoring pipeline: give --param package_uri=s3://... and "
                             "--param input_uri=s3://... (and as_of=YYYY-MM-DD for a transaction log; default: "
                             "the run's day)")
    submit.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a pipeline input, e.g. trials=20 or champion=s3://... (repeatable); checked against the "
                             "compiled pipeline's inputs and typed as they are, before anything is sent")
    submit.add_argument("--audit-log", help="the run's audit log on the cluster, s3://bucket/prefix")
    submit.add_argument("--no-cache", action="store_true", help="run every step, none from KFP's cache")
    submit.add_argument("--namespace", help="the Kubeflow profile namespace (multi-user deployments)")
    submit.add_argument("--service-account", default=PIPELINE_SERVICE_ACCOUNT,
                        help="the account the run's pods run as, which may deploy and create Katib Experiments "
                             f"(default {PIPELINE_SERVICE_ACCOUNT}, from kustomize/)")
    add_image_argument(submit, "every step's image")
    _add_cluster_data_arguments(submit)
    add_runs_dir_argument(submit, OWNER_RUNS_DIR_HELP)
    submit.set_defaults(handler=_submit)

    deploy = commands.add_parser(
        "deploy", help="render a package's InferenceService; apply it when a kubeconfig is available")
    deploy.add_argument("target", metavar="PACKAGE_DIR|USE_CASE|VERSION",
                        help="a package folder or s3:// prefix, a use case (name or YAML path) whose newest local "
                             "package is deployed, or a package version (or its unique prefix) in --runs-dir")
    deploy.add_argument("--name", help="InferenceService name (default: the use case's name)")
    deploy.add_argument("--storage-uri", help="where KServe finds the package, which `flowline upload` puts there "
                                              "(default: the s3:// target, else s3://flowline-models/NAME/VERSION); "
                                              "an s3:// one is checked to hold this package before anything is "
                                              "applied")
    deploy.add_argument("--namespace", default="flowline", help="the InferenceService's namespace (default flowline)")
    deploy.add_argument("--canary-percent", type=int, default=10,
                        help="traffic for the new version when a champion is serving (default 10)")
    deploy.add_argument("-o", "--output", help="manifest file (default: NAME-inferenceservice.yaml)")
    deploy.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    deploy.add_argument("--render-only", action="store_true", help="write the manifest, do not apply it")
    add_runs_dir_argument(deploy, "where to look for a use case's runs")
    add_audit_log_argument(deploy)
    deploy.set_defaults(handler=_deploy)

    katib = commands.add_parser(
        "katib", help="write Katib Experiment YAMLs (HPO and NAS) for a use case, or for every built-in one")
    add_use_case_arguments(katib, optional=True)
    katib.add_argument("-o", "--output", default=".", help="folder for the YAML files (default: .)")
    add_image_argument(katib, "the trials' image")
    katib.add_argument("--namespace", default="flowline", help="the Experiments' namespace (default flowline)")
    _add_cluster_data_arguments(katib)
    add_runs_dir_argument(katib, OWNER_RUNS_DIR_HELP)
    katib.set_defaults(handler=_katib)


def add_image_argument(parser: argparse.ArgumentParser, what: str, flag: str = "--image") -> None:
    """An image option, defaulting to $FLOWLINE_IMAGE (read here, when the command line is parsed) or the
    project image."""
    parser.add_argument(flag, default=default_image(),
                        help=f"{what} (default: ${IMAGE_ENV}, else {DEFAULT_IMAGE})")


def _add_cluster_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", help="where the cluster run reads the data: s3://BUCKET/KEY or an http(s) URL "
                                         "(default: the use case's, when it is one of those)")
    parser.add_argument("--upload-data", metavar="S3_PREFIX",
                        help="upload the use case's local file (or --source's) to s3://BUCKET/PREFIX first, "
                             "and read it from there")


def _cluster_source(args: argparse.Namespace, use_case) -> str:
    """Where the cluster run reads the data: --source, or with --upload-data the use case's own file,
    uploaded there first (a source already in object storage or at a URL is not uploaded)."""
    from flowline.use_case_loader import REMOTE_PREFIXES

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
    from flowline.pipelines.batch_pipeline import compile_batch_pipeline
    from flowline.pipelines.template import compile_pipeline

    if args.batch:
        if args.source or args.upload_data:
            raise UsageError("--batch: the input is a run parameter (input_uri), not --source or --upload-data")
        compile_batch_pipeline(use_case(args), args.output, image=args.image)
    else:
        chosen = use_case_to_run(args)
        compile_pipeline(chosen, args.output, source=_cluster_source(args, chosen), image=args.image)
    print(f"compiled: {args.output}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from flowline.pipelines.submission import SubmissionError, parse_parameters, submit

    try:
        parameters = parse_parameters(args.param)
        if args.audit_log:
            parameters["audit_log"] = args.audit_log
        if args.batch and (args.source or args.upload_data):
            raise UsageError("--batch: the input is a run parameter (--param input_uri=...), not --source")
        chosen = use_case(args) if args.batch else use_case_to_run(args)
        source = "" if args.batch else _cluster_source(args, chosen)
        submitted = submit(chosen, args.host, args.experiment, args.schedule, parameters, not args.no_cache,
                           args.namespace, os.environ.get("KFP_TOKEN"), source, args.image, args.batch,
                           args.service_account, args.replace)
    except SubmissionError as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    for replaced in submitted.get("replaced", []):
        print(f"deleted recurring run {replaced} (--replace)")
    if "recurring_run_id" in submitted:
        print(f"recurring run {submitted['recurring_run_id']} ({submitted['cron']}) in experiment "
              f"{submitted['experiment_id']}")
    else:
        print(f"run {submitted['run_id']} in experiment {submitted['experiment_id']}: {submitted['url']}")
    return 0


def _katib(args: argparse.Namespace) -> int:
    from flowline.katib import (ExperimentError, built_in_experiments, trial_source, use_case_experiments,
                                write_experiments)

    try:
        if args.use_case_name or args.use_case_path:
            chosen = use_case_to_run(args)
            source = _cluster_source(args, chosen)
            manifests = use_case_experiments(chosen, args.image, args.namespace, source)
            read = trial_source(chosen, source)
            if not read.startswith("s3://"):
                print(f"flowline: warning: the trials read {read}, but the shipped "
                      "NetworkPolicies let trial pods reach only object storage: give --source s3://... or "
                      "--upload-data s3://BUCKET/PREFIX, or open egress to that host", file=sys.stderr)
        else:
            if args.source or args.upload_data:
                raise UsageError("--source and --upload-data: for one use case, not every built-in one")
            manifests, left_out = built_in_experiments(args.image, args.namespace)
            for name, reason in left_out.items():
                print(f"left out: {name}: {reason}")
    except ExperimentError as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    for path in write_experiments(manifests, args.output):
        print(f"written: {path}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from flowline.deployment import deploy_package
    from flowline.package.format import verify
    from flowline.package.remote import download_package
    from flowline.registry import resolve_package
    from flowline.storage import is_s3

    package = resolve_package(args.target, args.runs_dir)
    if is_s3(package):
        package = str(download_package(package))  # a verified local copy: deploy reads its manifest and evaluation
    manifest = verify(package)
    name = args.name or manifest["name"]
    # A package given by its s3:// prefix is served from there; a local one from where `flowline upload` put it.
    storage_uri = args.storage_uri or (args.target.rstrip("/") if is_s3(args.target)
                                       else f"s3://flowline-models/{name}/{manifest['version']}")
    output = args.output or f"{name}-inferenceservice.yaml"
    apply_to_cluster = not args.render_only and kubeconfig_available(args.kubeconfig)
    if apply_to_cluster and (missing := _not_stored(manifest, storage_uri)):
        print(f"flowline: deploy: {missing}: put the package there first (flowline upload {package} {storage_uri}), "
              "or give --storage-uri where it is", file=sys.stderr)
        return EXIT_ERROR
    with talking_to("the Kubernetes API", kubernetes_api(args.kubeconfig) if apply_to_cluster else "",
                    KUBE_CREDENTIALS):
        outcome = deploy_package(package, storage_uri, args.namespace, output, apply_to_cluster,
                                 args.canary_percent, name, args.kubeconfig)
    audit.append(audit_log(args), "deployment", {
        "inference_service": f"{args.namespace}/{outcome['name']}", "package": package,
        "package_version": manifest["version"], "storage_uri": storage_uri, "action": outcome["action"],
        "drift_monitor": outcome["drift_monitor"]})
    print(f"{outcome['name']}: {outcome['action']} ({outcome['manifest']})")
    return 0


def _not_stored(manifest: dict, storage_uri: str) -> str:
    """Why KServe would not find this package at `storage_uri` (s3:// only), or "" when it is there or cannot be
    checked from here: a model server started on a missing or other package would fail or serve the wrong one."""
    from flowline.package.format import PackageError
    from flowline.package.remote import manifest_at
    from flowline.storage import MissingObject, StorageError, is_s3

    if not is_s3(storage_uri):
        return ""
    try:
        stored = manifest_at(storage_uri)
    except (MissingObject, PackageError) as error:
        return f"no package at {storage_uri} ({error})"
    except StorageError as error:
        print(f"flowline: warning: deploy: cannot check that the package is at {storage_uri}: {error}",
              file=sys.stderr)
        return ""
    if stored["version"] != manifest["version"]:
        return f"{storage_uri} holds package version {stored['version']}, not {manifest['version']}"
    return ""
