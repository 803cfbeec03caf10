"""`flowline ab design` and `flowline canary analyze | promote | rollback`: a challenger against its champion."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flowline import audit
from flowline.pipelines.cli.common import EXIT_ERROR, UsageError, add_audit_log_argument, audit_log
from flowline.cluster import KUBE_CREDENTIALS, kubeconfig_available, kubernetes_api, talking_to

AUDIT_ACTIONS = {"promote": "promotion", "rollback": "rollback"}


def add_parser(commands: argparse._SubParsersAction) -> None:
    from flowline.ab_testing import CanaryPolicy

    ab_command = commands.add_parser("ab", help="A/B tests between a champion and a challenger")
    ab_actions = ab_command.add_subparsers(dest="ab_action", required=True)
    design = ab_actions.add_parser("design", help="rows per arm for a two-proportion test (and days, given the traffic)")
    design.add_argument("--baseline-rate", type=float, required=True, help="the champion's rate, e.g. 0.10")
    design.add_argument("--mde", type=float, required=True,
                        help="the smallest absolute difference worth detecting, e.g. 0.02 for 10 %% -> 12 %%")
    design.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    design.add_argument("--power", type=float, default=0.8, help="chance to detect the effect (default 0.8)")
    design.add_argument("--daily-rows-per-arm", type=float, help="traffic per arm per day, for the duration")
    design.add_argument("--json", action="store_true", help='print {"n_per_arm": N, ...} as JSON')
    design.set_defaults(handler=_ab_design)

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
                         help=f"per arm before any decision but an error rollback, which is valid at any count "
                              f"(default {defaults.min_requests})")
    analyze.add_argument("--max-error-ratio", type=float, default=defaults.max_error_ratio,
                         help="roll back when the canary's error rate is significantly above this times the "
                              f"champion's (default {defaults.max_error_ratio})")
    analyze.add_argument("--max-latency-ratio", type=float, default=defaults.max_latency_ratio,
                         help="roll back when the canary's p99 latency is significantly above this times the "
                              f"champion's (default {defaults.max_latency_ratio})")
    analyze.add_argument("--alpha", type=float, default=defaults.alpha,
                         help=f"the sequential test's significance level (default {defaults.alpha})")
    analyze.add_argument("--tau", type=float, default=defaults.tau,
                         help=f"the smallest difference in outcome rate worth acting on (default {defaults.tau})")
    analyze.add_argument("--value-per-success", type=float, default=0.0,
                         help="what one good outcome is worth (for churn, a retained customer: costs.false_negative, "
                              "500): adds the business impact per 1,000 requests")
    analyze.add_argument("--name", help="the InferenceService (its model's name in Prometheus); with --apply, "
                                        "promote or roll it back")
    analyze.add_argument("--namespace", default="flowline", help="the InferenceService's namespace (default flowline)")
    analyze.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, or the pod's service account")
    analyze.add_argument("--apply", action="store_true", help="patch the InferenceService on promote or rollback")
    add_audit_log_argument(analyze)
    analyze.set_defaults(handler=_canary_analyze)
    for operation, text in (("promote", "give the canary all traffic (remove canaryTrafficPercent)"),
                            ("rollback", "send all traffic back to the champion (canaryTrafficPercent 0)")):
        command = canary_actions.add_parser(operation, help=text)
        command.add_argument("name", nargs="?", help="the InferenceService")
        command.add_argument("--namespace", default="flowline", help="the InferenceService's namespace "
                                                                     "(default flowline)")
        command.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        command.add_argument("--manifest", help="edit this manifest file instead of the cluster")
        add_audit_log_argument(command)
        command.set_defaults(handler=_canary_patch)


def _ab_design(args: argparse.Namespace) -> int:
    from flowline.ab_testing import DesignError, days_needed, proportion_sample_size

    try:
        rows = proportion_sample_size(args.baseline_rate, args.mde, args.alpha, args.power)
        days = days_needed(rows, args.daily_rows_per_arm) if args.daily_rows_per_arm is not None else None
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
    print("That test looks once, at that size. `flowline canary analyze` decides with a sequential test, valid however "
          "often it is run, which needs about 3 to 4 times as many rows for the same power (notebook 03).")
    return 0


def _canary_analyze(args: argparse.Namespace) -> int:
    from flowline.ab_testing import CanaryPolicy, DesignError, PolicyError
    from flowline.canary import CanarySourceError, judge_canary, read_arms

    try:
        policy = CanaryPolicy(min_requests=args.min_requests, max_error_ratio=args.max_error_ratio,
                              max_latency_ratio=args.max_latency_ratio, alpha=args.alpha, tau=args.tau)
    except PolicyError as error:
        raise UsageError(f"--{error.field.replace('_', '-')} {getattr(args, error.field):g}: {error.advice}")
    if (args.apply or args.prometheus) and not args.name:
        print("flowline: --apply and --prometheus need --name, the InferenceService", file=sys.stderr)
        return EXIT_ERROR
    try:
        arms, source = read_arms(args.prometheus or "", args.name or "", args.predictions or "", args.outcomes or "",
                                  args.namespace)
        with talking_to("the Kubernetes API", kubernetes_api(args.kubeconfig) if args.apply else "", KUBE_CREDENTIALS):
            decided = judge_canary(arms, policy, audit_log(args), args.name, args.namespace, args.apply,
                                   args.kubeconfig, source, args.value_per_success)
    except (DesignError, CanarySourceError) as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(decided, indent=1))
    print(f"canary: {decided['decision']}{' (applied)' if decided['applied'] else ''}: {decided['reason']}")
    return 0


def _canary_patch(args: argparse.Namespace) -> int:
    import yaml

    from flowline.canary import patch_inference_service
    from flowline.inference_service import promoted, rolled_back

    operation = args.canary_action
    if not (args.name or args.manifest):
        raise UsageError(f"canary {operation}: give the InferenceService name, or --manifest FILE")
    if args.manifest:
        change = promoted if operation == "promote" else rolled_back
        before = yaml.safe_load(Path(args.manifest).read_text())
        predictor = before["spec"]["predictor"]
        percent = predictor.get("canaryTrafficPercent")
        document = change(before)
        Path(args.manifest).write_text(yaml.safe_dump(document, sort_keys=False))
        audit.append(audit_log(args), AUDIT_ACTIONS[operation],
                     {"manifest": args.manifest, "storage_uri": predictor.get("model", {}).get("storageUri"),
                      "canary_traffic_percent": {"before": percent,
                                                 "after": document["spec"]["predictor"].get("canaryTrafficPercent")}})
        print(f"{operation}: {args.manifest} updated")
        if operation == "promote" and percent == 0:  # KServe's rollback: the canary at 0 %, the champion serving
            print(f"flowline: warning: {args.manifest} was rolled back (canaryTrafficPercent 0): this promotion gives "
                  "all traffic to the canary it rolled back", file=sys.stderr)
        return 0
    if not kubeconfig_available(args.kubeconfig):
        print("flowline: no kubeconfig found (give --kubeconfig, set KUBECONFIG, or use --manifest FILE)",
              file=sys.stderr)
        return EXIT_ERROR
    with talking_to("the Kubernetes API", kubernetes_api(args.kubeconfig), KUBE_CREDENTIALS):
        drift_monitor = patch_inference_service(args.name, args.namespace, operation, args.kubeconfig)
    record = {"inference_service": f"{args.namespace}/{args.name}"}
    if drift_monitor:
        record["drift_monitor"] = drift_monitor
    audit.append(audit_log(args), AUDIT_ACTIONS[operation], record)
    print(f"{operation}: {args.namespace}/{args.name}" + (f"; {drift_monitor}" if drift_monitor else ""))
    return 0
