"""`flowline erase`: a data subject's rows out of a use case's stored datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowline.pipelines.cli.common import (EXIT_ERROR, ONLINE_STORE_FILE, add_audit_log_argument, add_runs_dir_argument,
                                           audit_log, default_online_store, use_case)


def add_parser(commands: argparse._SubParsersAction) -> None:
    erase = commands.add_parser(
        "erase", help="remove a data subject's rows from a use case's stored datasets and quarantine")
    erase.add_argument("use_case_name", nargs="?", metavar="USE_CASE",
                       help="a use case: built-in (e.g. churn), or recorded in the runs folder")
    erase.add_argument("--use-case", dest="use_case_path", metavar="NAME|PATH",
                       help="a use case name (built-in or recorded in the runs folder) or a use-case YAML file")
    erase.add_argument("--id", required=True, help="the subject's id (the use case's first id column, or its entity)")
    add_runs_dir_argument(erase)
    add_audit_log_argument(erase)
    erase.add_argument("--online-store", metavar="URL",
                       help="the online store to remove the subject's events from, when it is the use case's "
                            "entity: sqlite:///path.db or redis://host:port/db (default: the runs folder's "
                            "online-store.db, when it exists)")
    erase.set_defaults(handler=_erase)


def _erase(args: argparse.Namespace) -> int:
    from flowline.erasure import ErasureError, erase_subject
    from flowline.online_store import OnlineStoreError, open_store

    local = Path(args.runs_dir) / ONLINE_STORE_FILE
    url = args.online_store or (default_online_store(args.runs_dir) if local.is_file() else None)
    try:
        store = open_store(url) if url else None
        try:
            report = erase_subject(_use_case(args), args.id, args.runs_dir, audit_log(args), store)
        finally:
            if store is not None:
                store.close()
    except (ErasureError, OnlineStoreError) as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    for path, rows in report.rows_removed.items():
        print(f"erased {rows} row(s) from {path}")
    if url:
        print(f"erased {report.online_events_removed} event(s) from the online store {url}")
    print(f"erased {report.total_rows} row(s) of subject {report.subject[:28]} in "
          f"{len(report.rows_removed)} file(s); recorded in {audit_log(args)}")
    if report.erased_before:
        print(f"erased before at {', '.join(report.erased_before)} (UTC): what those erasures found still standing "
              "is listed below")
    elif not report.total_rows and not report.online_events_removed:
        print(f"flowline: warning: no row or event of {args.id!r} was found under {args.runs_dir}: check the id "
              "and --runs-dir", file=sys.stderr)
    if report.copies_left:
        print("copies erasure cannot edit, which may hold the subject (delete them, or retrain and delete the run):")
        for copy in report.copies_left:
            print(f"  {copy}")
    print(f"the use case's data, which its next run reads, is not edited: remove the subject there too: "
          f"{report.source}")
    if report.packages_trained_on_subject:
        print("packages trained on this subject (retrain to forget it):")
        for package in report.packages_trained_on_subject:
            print(f"  {package}")
    else:
        print("no package was trained on this subject")
    return 0


def _use_case(args: argparse.Namespace):
    """The use case by its built-in name or file, or by a name only the runs folder records, as `score` and `serve`
    take it (its newest package's use case): `erase --use-case customers` was refused where they served it."""
    from flowline.package.format import Package
    from flowline.registry import read
    from flowline.use_case import UseCaseError

    try:
        return use_case(args)
    except UseCaseError:
        newest = read(args.runs_dir).newest(args.use_case_name or args.use_case_path)
        if newest is None:
            raise
        return Package.open(newest.path).use_case
