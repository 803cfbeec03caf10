"""`flowline score`: batch scoring of a table (or of a transaction log's customers) with a package, to Parquet."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from flowline.pipelines.cli.common import (EXIT_ERROR, UsageError, add_audit_log_argument, add_runs_dir_argument,
                                           audit_log)

EXAMPLES = """examples:
  flowline score churn --input customers.csv --output churn-scores.parquet
  flowline score 4a50135 --input s3://data/customers.parquet --output scores.parquet --chunk-rows 100000
  flowline score clv --input https://example.com/cdnow.txt --as-of 1997-09-30 --output clv-scores.parquet
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser(
        "score", help="score a CSV or Parquet table with a package, in chunks, to Parquet (bad rows quarantined)",
        description="Score every row of a table with a model package, chunk by chunk (memory follows "
                    "--chunk-rows, not the input), and write the ids, the prediction, the decision or segment, the "
                    "package version and the time to Parquet. Rows that break the package's data contract go to "
                    "the quarantine file with their reasons: rows in = rows scored + rows quarantined. Values "
                    "outside the training profile are scored and counted per column. With --as-of, a "
                    "transaction-log use case (clv) scores every customer from the log, read whole, as of that "
                    "date. The run is recorded in the audit log.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    score.add_argument("model", metavar="MODEL",
                       help="a package folder or s3:// prefix, a use case (name or YAML path: its newest local "
                            "package), or a package version (or its unique prefix) in --runs-dir")
    score.add_argument("--input", required=True, metavar="DATA",
                       help="CSV or Parquet: a path, an http(s) URL or s3://bucket/key (remote files are copied to a "
                            "temporary file first); CSV is read with the use case's separator and encoding")
    score.add_argument("--output", required=True, metavar="OUT",
                       help="the scores, Parquet: a path or s3://bucket/key; written only when the run succeeds")
    score.add_argument("--quarantine", metavar="FILE",
                       help="the quarantined rows with their reasons, Parquet (default: OUT with .quarantine.parquet)")
    score.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                       help="rows read and scored at a time (default 50000)")
    score.add_argument("--format", choices=("csv", "parquet"),
                       help="the input's format (default: parquet for .parquet or .pq, else csv)")
    score.add_argument("--separator", metavar="SEP",
                       help="a CSV input's separator (default: the use case's data.separator, as training read)")
    score.add_argument("--encoding", metavar="NAME",
                       help="a CSV input's encoding, e.g. latin-1 (default: the use case's data.encoding)")
    score.add_argument("--as-of", type=date.fromisoformat, metavar="YYYY-MM-DD",
                       help="a transaction-log use case: score every customer from its transactions on or before "
                            "this date")
    score.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    add_runs_dir_argument(score, "where to look for a use case's or a version's package")
    add_audit_log_argument(score)
    score.set_defaults(handler=_score)


def default_quarantine(output: str) -> str:
    """OUT.parquet -> OUT.quarantine.parquet (beside it, also in object storage)."""
    stem = output[: -len(".parquet")] if output.endswith(".parquet") else output
    return f"{stem}.quarantine.parquet"


TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl")  # what `--output scores.csv` was silently not


def _score(args: argparse.Namespace) -> int:
    from flowline import audit, batch
    from flowline.contract import ContractError
    from flowline.pipelines.progress import rows_bar
    from flowline.registry import resolve_package
    from flowline.scoring import Scorer
    from flowline.storage import is_s3

    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise UsageError(f"--chunk-rows {args.chunk_rows}: give at least 1")
    # Local paths as absolute ones: the audit record is what `flowline erase` finds them by, from any folder.
    output, quarantine = (_place(path) for path in (args.output, args.quarantine or default_quarantine(args.output)))
    if quarantine == output:
        raise UsageError("--quarantine and --output name the same file")
    for flag, path in (("--output", output), ("--quarantine", quarantine)):
        if Path(path).is_absolute() and Path(path).is_dir():
            raise UsageError(f"{flag} {path} is a folder: give a file name")
        if Path(path).suffix.lower() in TEXT_SUFFIXES:  # it would be Parquet under a name that says otherwise
            raise UsageError(f"{flag} {path}: scores and quarantines are written as Parquet; name it "
                             f"{Path(path).stem}.parquet")
    scorer = Scorer.open(resolve_package(args.model, args.runs_dir))
    if not args.as_of and scorer.use_case.transaction_log is not None:
        raise UsageError(f"use case {scorer.use_case.name!r} scores the customers of transaction log "
                         f"{scorer.use_case.transaction_log.name!r}: give --as-of YYYY-MM-DD")
    contract = scorer.use_case  # whose max_bad_fraction the run is held to
    try:
        if args.as_of:
            contract = batch.read_as(scorer.use_case.transaction_log or _log_use_case(args.model, scorer.use_case.name),
                                     args.separator, args.encoding)
            summary = batch.score_customers(scorer, contract, args.input, args.as_of, output, quarantine)
        else:
            with rows_bar(sys.stderr, batch.known_rows(args.input, args.format)) as bar:
                summary = batch.score_table(scorer, args.input, output, quarantine,
                                            args.chunk_rows or batch.DEFAULT_CHUNK_ROWS, args.format, bar.update,
                                            args.separator, args.encoding)
    except (batch.BatchError, ContractError) as error:
        print(f"flowline: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # where the outputs go cannot be written (read-only, a file for a folder): none was
        if error.filename is None:  # not the system's word on a path (an input that does not exist says so itself)
            raise
        print(f"flowline: score: {error.strerror}: {error.filename}; no output was written", file=sys.stderr)
        return EXIT_ERROR
    try:
        batch.record(audit_log(args), summary)
    except (OSError, audit.AuditError) as error:  # outputs no record names would escape `flowline erase`
        local = [path for path in (output, quarantine) if not is_s3(path)]
        for path in local:
            Path(path).unlink(missing_ok=True)
        left = [path for path in (output, quarantine) if is_s3(path)]
        print(f"flowline: score: the audit log could not record the run ({error}), so its outputs were removed"
              + (f" (those in object storage stay: {', '.join(left)})" if left else "")
              + ": `flowline erase` finds a subject's rows by that record", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(summary.as_dict(), indent=1) if args.json else summary_text(summary))
    try:  # as ingest refuses a file: a scheduled run that scored nothing, or little, fails (its outputs are kept)
        batch.enforce_bad_fraction(summary, contract)
    except ContractError as error:
        print(f"flowline: score: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _place(path: str) -> str:
    """An output's place: an s3:// URI as given, a local path made absolute."""
    from flowline.storage import is_s3

    return path if is_s3(path) else str(Path(path).resolve())


def _log_use_case(model: str, package_use_case: str):
    """For a package from before customer rows kept their log's use case (`transaction_log`): MODEL when it
    is a use-case YAML file, else the built-in use case the package was trained for. A UsageError when that is
    no transaction log: the package scores the rows of a table, which --as-of does not apply to."""
    from flowline.use_case import UseCaseError
    from flowline.use_case_loader import load_use_case

    try:
        log = load_use_case(model if Path(model).suffix.lower() in (".yaml", ".yml") else package_use_case)
    except UseCaseError:
        log = None
    if log is None or log.transactions is None:
        raise UsageError(f"--as-of scores every customer of a transaction log, but use case {package_use_case!r} "
                         "scores the rows of a table: leave --as-of out")
    return log


def summary_text(summary) -> str:
    """The run in a few lines: counts, where the files are, the columns with values out of profile."""
    from flowline.contract import utf8_misread

    counts = ", ".join(f"{name.replace('_', ' ')} {value:,}" for name, value in summary.counts.items())
    if summary.counts.get("rows_scored") and "rows_flagged" in summary.counts:
        counts += f" ({summary.counts['rows_flagged'] / summary.counts['rows_scored']:.1%})"
    lines = [f"scored with {summary.use_case} {summary.package_version}"
             + (f" as of {summary.as_of}" if summary.as_of else "") + f": {counts} ({summary.seconds:.1f} s)",
             f"scores:     {summary.output}", f"quarantine: {summary.quarantine}"]
    outside = {column: count for column, count in summary.out_of_profile.items() if count}
    if outside:
        lines.append("outside the training profile (scored): "
                     + ", ".join(f"{column} {count:,}" for column, count in outside.items()))
    if summary.ignored_columns:
        lines.append(f"not read (the contract does not declare them): {', '.join(summary.ignored_columns)}")
    if summary.blank_columns:
        lines.append(f"warning: blank in every row, so scored on the training fill alone: "
                     f"{', '.join(summary.blank_columns)} (is the column empty in this file?)")
    if summary.utf8_misread_as:
        lines.append(f"warning: the input {utf8_misread(summary.utf8_misread_as)}: pass --encoding utf-8")
    return "\n".join(lines)
