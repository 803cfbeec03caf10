"""The batch-scoring step's work: score, write the summary for the dashboard, record the run."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Optional

from flowline import batch
from flowline.scoring import Scorer
from flowline.use_case import UseCase


def summary_markdown(summary: batch.BatchSummary) -> str:
    """The run for the Kubeflow dashboard: the package, the counts and the columns out of profile."""
    lines = [f"**Batch scoring** with {summary.use_case} package `{summary.package_version}`"
             + (f", customers as of {summary.as_of}" if summary.as_of else ""), "",
             f"Input: `{summary.input}`", "", "| count | rows |", "|---|---|",
             *(f"| {name.replace('_', ' ')} | {value:,} |" for name, value in summary.counts.items())]
    outside = {column: count for column, count in summary.out_of_profile.items() if count}
    lines += ["", "Values outside the training profile (scored): "
              + (", ".join(f"`{column}` {count:,}" for column, count in outside.items()) if outside else "none")]
    return "\n".join(lines) + "\n"


def scoring_day(use_case: UseCase, as_of: str) -> Optional[date]:
    """The day a transaction log's customers are scored at: `as_of`, or today (UTC) when it is ""; None for a
    use case without a transaction log, which takes no `as_of`."""
    if not use_case.transactions:
        if as_of:
            raise batch.BatchError(f"as_of {as_of!r}: use case {use_case.name!r} has no transaction log to take it")
        return None
    if not as_of:
        return datetime.now(timezone.utc).date()
    try:
        return date.fromisoformat(as_of)
    except ValueError:
        raise batch.BatchError(f"as_of {as_of!r}: give a date as YYYY-MM-DD, or \"\" for the run's day") from None


def score_files(use_case: UseCase, package_uri: str, input_uri: str, as_of: str, audit_log: str,
                scores_file: str, quarantine_file: str, summary_file: str) -> batch.BatchSummary:
    """Score `input_uri` with the package (see the component); write the scores, the quarantine and the
    summary; record the run in `audit_log` when set. The caller holds the run to the use case's
    max_bad_fraction (batch.enforce_bad_fraction) once it has logged the counts."""
    day = scoring_day(use_case, as_of)  # checked before the package is fetched
    scorer = Scorer.open(package_uri)
    if day is not None:
        result = batch.score_customers(scorer, use_case, input_uri, day, scores_file, quarantine_file)
    else:
        result = batch.score_table(scorer, input_uri, scores_file, quarantine_file)
    with open(summary_file, "w") as out:
        out.write(summary_markdown(result))
    if audit_log:
        batch.record(audit_log, result)
    print("score: " + ", ".join(f"{name} {value}" for name, value in result.counts.items()))
    return result
