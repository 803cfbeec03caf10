"""`flowline audit verify | anchor`: the audit trail of runs, packages, gates and deployments."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flowline import audit
from flowline.pipelines.cli.common import EXIT_ERROR, runs_dir


def add_parser(commands: argparse._SubParsersAction) -> None:
    audit_command = commands.add_parser("audit", help="the audit trail of runs, packages, gates and deployments")
    actions = audit_command.add_subparsers(dest="audit_action", required=True)
    check = actions.add_parser(
        "verify", help="check the hash chain, the signatures ($FLOWLINE_AUDIT_KEY) and the head; exit 1 and name the "
                   "first bad line when the log is empty, or was edited, cut, extended or reordered")
    check.add_argument("--log", default=str(Path(runs_dir()) / "audit.jsonl"),
                       help="the log: a file, or s3://bucket/prefix (default: $FLOWLINE_RUNS_DIR/audit.jsonl or "
                            "runs/audit.jsonl)")
    check.add_argument("--require-signed", action="store_true",
                       help="exit 1 unless every record's signature is checked: $FLOWLINE_AUDIT_KEY must be set (with "
                            "it set, verify refuses an unsigned record anyway); for a CI or cron check of a signed log")
    check.set_defaults(handler=_verify)
    anchor = actions.add_parser(
        "anchor", help="give a log written before heads existed its head, after checking its whole chain")
    anchor.add_argument("--log", default=str(Path(runs_dir()) / "audit.jsonl"),
                        help="the log: a file, or s3://bucket/prefix (default as for verify)")
    anchor.set_defaults(handler=_anchor)


def _verify(args: argparse.Namespace) -> int:
    if args.require_signed and not os.environ.get(audit.KEY_ENV):
        print(f"flowline: --require-signed needs ${audit.KEY_ENV}, the key the log was signed with, to check its "
              "signatures", file=sys.stderr)
        return EXIT_ERROR
    try:
        records = audit.verify(args.log)
    except audit.NoAuditLog as error:
        print(f"flowline: {error} (give the log with --log)", file=sys.stderr)
        return EXIT_ERROR
    except audit.AuditError as error:
        print(f"audit log TAMPERED: {error}", file=sys.stderr)
        return EXIT_ERROR
    signed = (f"signed ({audit.KEY_ENV})" if os.environ.get(audit.KEY_ENV)
              else "UNSIGNED: tamper-evident against accidents only")
    print(f"audit log intact: {args.log}, {len(records)} records, last hash {records[-1]['hash'][:16]}, {signed}")
    return 0


def _anchor(args: argparse.Namespace) -> int:
    """An AuditError (no log, one anchored already, a broken chain) is reported by main()."""
    last = audit.anchor(args.log)
    print(f"audit log anchored: {args.log}, {last['seq']} records checked, head at record {last['seq']} "
          f"({last['hash'][:16]})")
    return 0
