"""The `flowline` command line: one module per command group, each adding its own subcommands.

| module | commands |
|---|---|
| run.py | run |
| cluster.py | compile, submit, deploy, katib |
| packages.py | upload, download, verify |
| serve.py | serve |
| history.py | seed |
| erasure.py | erase |
| audit_trail.py | audit verify, audit anchor |
| canary.py | ab design, canary analyze, canary promote, canary rollback |
| data.py | init, validate, datasets |
| registry.py | runs, models, show, open |
| features.py | features [list], features diff |
| score.py | score |
| completion.py | completion |
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from flowline import __version__, audit, one_line_warnings
from flowline.pipelines.cli import (audit_trail, canary, cluster, completion, data, erasure, features, history,
                                    packages, registry, run, score, serve)
from flowline.pipelines.cli.common import EXIT_ERROR, EXIT_GATE_FAILED, UsageError
from flowline.cluster import ClusterError
from flowline.online_store import OnlineStoreUnavailable
from flowline.storage import StorageError

__all__ = ["EXIT_ERROR", "EXIT_GATE_FAILED", "build_parser", "main"]

COMMAND_GROUPS = (run, score, cluster, packages, serve, history, erasure, audit_trail, canary, data, registry,
                  features, completion)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowline", description="Tabular models from raw data to KServe.")
    parser.add_argument("--version", action="version", version=f"flowline {__version__}")
    parser.set_defaults(root_parser=parser)  # for `flowline completion`, which describes the whole parser
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_parser(commands)
    _name_parsers(parser)
    return parser


def _name_parsers(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand's parser to its own arguments (`command_parser`), the deepest one chosen winning, so
    that a mistake in `flowline run churn --trails 1` is shown with `run`'s usage, not `flowline COMMAND ...`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.set_defaults(command_parser=command)
                _name_parsers(command)


# Commands that SIGTERM stops through their cleanup (`_sigterm_exits`). Not `run`: kfp.local would wait out the
# step's process, which the signal does not reach, so the command would outlive a pod's grace period.
SIGTERM_EXITS = frozenset({"score"})


@contextlib.contextmanager
def _sigterm_exits():
    """SIGTERM (Kubernetes stopping a pod, KFP cancelling a run) as SystemExit(143), so a command's cleanup runs:
    a scoring run's temporary files are removed and nothing half-written is moved into place. Python's default
    is to die at once, leaving them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    from flowline.datasets import DatasetError
    from flowline.package.format import PackageError
    from flowline.use_case import UseCaseError

    one_line_warnings()
    args, unknown = build_parser().parse_known_args(argv)
    parser = args.command_parser  # the command's own: its usage is the one that helps
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if hasattr(args, "use_case_path"):
        given = bool(args.use_case_name) + bool(args.use_case_path)
        if given > 1 or (given == 0 and not getattr(args, "use_case_optional", False)):
            parser.error("give a use case name or --use-case PATH (exactly one)")
    try:
        with _sigterm_exits() if args.command in SIGTERM_EXITS else contextlib.nullcontext():
            return args.handler(args)
    except UsageError as error:
        parser.error(str(error))
    except (UseCaseError, DatasetError, PackageError, StorageError, audit.AuditError, FileNotFoundError,
            ClusterError, OnlineStoreUnavailable) as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
