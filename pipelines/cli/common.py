"""What several command groups share: exit codes, the runs folder, the use-case arguments, the audit log."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


EXIT_ERROR = 1
EXIT_GATE_FAILED = 3
EXIT_FEATURES_DIFFER = 4  # `flowline features diff`: the two feature sets differ
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process SIGINT ended


class UsageError(ValueError):
    """Options that parse but do not fit together: main() reports it as argparse does (exit 2)."""


def runs_dir() -> str:
    return os.environ.get("FLOWLINE_RUNS_DIR", "runs")


def add_runs_dir_argument(parser: argparse.ArgumentParser, what: str = "where run folders are") -> None:
    parser.add_argument("--runs-dir", default=runs_dir(), help=f"{what} (default: $FLOWLINE_RUNS_DIR or ./runs)")


def unrecorded_use_case(use_case: str | None, recorded: set[str], what: str, runs: str) -> bool:
    """True, having said so on stderr, when a listing is asked for a use case that is neither built in nor recorded
    in the runs folder, which records others: a misspelt name listed nothing and exited 0, as if there were nothing
    to list. A built-in use case not run yet lists nothing, as it should."""
    from flowline.use_case_loader import built_in_use_cases

    if not use_case or use_case in recorded or not recorded or use_case in built_in_use_cases():
        return False
    print(f"flowline: no {what} of use case {use_case!r} under {runs}; recorded use cases: "
          f"{', '.join(sorted(recorded))}", file=sys.stderr)
    return True


ONLINE_STORE_FILE = "online-store.db"


def default_online_store(runs: str) -> str:
    """The local online store: an SQLite file in the runs folder, which `serve`, `seed` and `erase` share."""
    return f"sqlite://{(Path(runs) / ONLINE_STORE_FILE).resolve()}"


def add_audit_log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audit-log", help="the audit log to record this in: a file, or s3://bucket/prefix on a "
                                            "cluster (default: audit.jsonl in --runs-dir where the command has one, "
                                            "else in $FLOWLINE_RUNS_DIR or ./runs)")


def audit_log(args: argparse.Namespace) -> str:
    """--audit-log, else the runs folder's: the one the runs themselves and `flowline runs` use."""
    return args.audit_log or str(Path(getattr(args, "runs_dir", None) or runs_dir()) / "audit.jsonl")


def add_use_case_arguments(parser: argparse.ArgumentParser, optional: bool = False) -> None:
    """USE_CASE or --use-case PATH, exactly one (main() checks); with `optional`, also neither."""
    parser.add_argument("use_case_name", nargs="?", metavar="USE_CASE",
                        help="a use case: built-in (e.g. churn) or recorded in the runs folder"
                        + (" (default: all)" if optional else ""))
    parser.add_argument("--use-case", dest="use_case_path", metavar="PATH", help="a use-case YAML file")
    parser.set_defaults(use_case_optional=optional)


def use_case(args: argparse.Namespace):
    from flowline.use_case_loader import load_use_case

    return load_use_case(args.use_case_path or args.use_case_name)



def use_case_to_run(args: argparse.Namespace):
    """The use case as a run or compiled pipeline uses it: when it reuses another's entity-feature definition,
    with the owner's window outputs from the owner's champion package in --runs-dir."""
    from flowline.feature_registry import with_owner_outputs

    return with_owner_outputs(use_case(args), args.runs_dir)
