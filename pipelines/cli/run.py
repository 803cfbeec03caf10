"""`flowline run`: a use case's pipeline, locally through kfp.local."""

from __future__ import annotations

import argparse
import sys

from flowline.pipelines.cli.common import (
    EXIT_ERROR,
    EXIT_GATE_FAILED,
    EXIT_INTERRUPTED,
    add_runs_dir_argument,
    add_use_case_arguments,
    use_case_to_run,
)
from flowline.use_case import MAX_TRIALS


def add_parser(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run a use case's pipeline locally through kfp.local")
    add_use_case_arguments(run)
    budget = run.add_mutually_exclusive_group()
    budget.add_argument("--trials", type=_trials, default=0, metavar="N",
                        help=f"tuning trials for every model family, 1 to {MAX_TRIALS:,}, reproducible (default: the "
                             "use case's budget)")
    budget.add_argument("--time-budget", type=_seconds, metavar="SECONDS",
                        help="seconds for the feature and model search, spent across the families cost-aware; the "
                             "other steps and the final fits come on top, and the trials each family gets depend on "
                             "measured time, so the model is not reproducible (use --trials for that) (default: the "
                             "use case's tuning.time_budget, else its trials)")
    run.add_argument("--tuning-backend", choices=("auto", "optuna", "katib"),
                     help="where trials run (default: the use case's tuning.backend; auto is Optuna off-cluster)")
    champion = run.add_mutually_exclusive_group()
    champion.add_argument("--champion", metavar="PACKAGE_DIR|USE_CASE|VERSION",
                          help="the package to beat: a package folder, a use case (name or YAML path) whose champion "
                               "it is, or a package version (or its unique prefix) in --runs-dir (default: the "
                               "champion of this use case in --runs-dir)")
    champion.add_argument("--no-champion", action="store_true", help="compare with no champion (promote if gates pass)")
    run.add_argument("--source", help="read the data from this path or URL instead of the use case's")
    add_runs_dir_argument(run, "where run folders go")
    run.add_argument("--summary", help="also write the JSON summary here (the run folder always holds summary.json)")
    run.add_argument("-v", "--verbose", action="store_true", help="show every task's full log, not just progress")
    run.set_defaults(handler=_run)


def _trials(text: str) -> int:
    """--trials' value: 1 to MAX_TRIALS, as the use case's tuning.families takes (0, the default, is not given)."""
    try:
        trials = int(text)
    except ValueError:
        trials = 0
    if not 1 <= trials <= MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_TRIALS:,} trials (or leave it out: the use case's "
                                         f"budget), got {text!r}")
    return trials


def _seconds(text: str) -> float:
    """--time-budget's value: seconds above 0."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text!r}")
    return seconds


def _run(args: argparse.Namespace) -> int:
    from flowline.pipelines.local_run import RunInterrupted, format_summary, run_local
    from flowline.registry import resolve_package
    from flowline.use_case_loader import use_case_file

    champion = args.champion and resolve_package(args.champion, args.runs_dir, champion=True)
    use_case = use_case_to_run(args)
    if args.time_budget:
        use_case = use_case.model_copy(update={
            "tuning": use_case.tuning.model_copy(update={"time_budget": args.time_budget})})
    try:
        summary = run_local(
            use_case, args.runs_dir, args.trials, args.source or "", args.summary, args.verbose,
            "" if args.no_champion else champion,
            args.tuning_backend or "", written_in=use_case_file(args.use_case_path or args.use_case_name),
        )
    except RuntimeError as error:
        print(f"flowline: run failed: {error}", file=sys.stderr)
        return EXIT_ERROR
    except RunInterrupted as error:
        print(f"flowline: run {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_summary(summary))
    print(f"\nsummary: {summary['summary_path']}")
    return 0 if summary["gates_passed"] else EXIT_GATE_FAILED
