"""The customer-rows step's work: build the rows from the ingested transaction log and write them with
a summary (the rows themselves: flowline/customer_rows.py)."""

from __future__ import annotations

import pandas as pd

from flowline.customer_rows import CUTOFF_COLUMN, build_customer_rows
from flowline.use_case import UseCase


def summary_markdown(rows: pd.DataFrame, use_case: UseCase) -> str:
    """Per cut-off: entities, how many spent in the label window, and the label's mean and total."""
    label = use_case.label.column
    lines = [f"**Customer rows** from the transaction log (label `{label}`: spend over "
             f"{use_case.transactions.horizon_days} days after the cut-off)", "",
             "| cut-off | role | entities | spent anything | mean label | total label |", "|---|---|---|---|---|---|"]
    scoring = use_case.transactions.calibration_end.isoformat()
    for cutoff, part in rows.groupby(CUTOFF_COLUMN, sort=True):
        role = "scoring (test)" if cutoff == scoring else "training"
        lines.append(f"| {cutoff} | {role} | {len(part)} | {(part[label] > 0).mean():.1%} | "
                     f"{part[label].mean():.2f} | {part[label].sum():,.0f} |")
    return "\n".join(lines) + "\n"


def doubtful_lines(log: pd.DataFrame, use_case: UseCase) -> dict[str, int]:
    """Lines the contract keeps that may not be what they seem, counted (never dropped: CDNOW has 255 lines twice
    and 80 of amount 0, and either may be real): a line repeated exactly counts twice in its day's amount, and a
    line of amount 0 makes a purchase day of nothing, moving a customer's value with no word of it."""
    return {"repeated_lines": int(log.duplicated().sum()),
            "zero_amount_lines": int((log[use_case.transactions.amount_column] == 0).sum())}


def customer_rows_files(use_case: UseCase, dataset_file: str, rows_file: str, summary_file: str) -> dict:
    """Read the ingested log, write the customer rows (Parquet) and their summary (Markdown)."""
    log = pd.read_parquet(dataset_file)
    rows = build_customer_rows(log, use_case)
    rows.to_parquet(rows_file)
    doubtful = doubtful_lines(log, use_case)
    with open(summary_file, "w") as out:
        out.write(summary_markdown(rows, use_case))
        out.write(f"\nKept as they are, and counted: lines that repeat an earlier one exactly, "
                  f"{doubtful['repeated_lines']:,} (each counts in its day's amount); lines of amount 0, "
                  f"{doubtful['zero_amount_lines']:,} (each makes a purchase day). Remove them from the log where "
                  "they are not real.\n")
    counts = rows.groupby(CUTOFF_COLUMN).size().to_dict()
    print("customer-rows: " + ", ".join(f"{n} at {cutoff}" for cutoff, n in counts.items()))
    if any(doubtful.values()):
        print(f"customer-rows: kept and counted: lines repeated exactly, {doubtful['repeated_lines']:,}; lines of "
              f"amount 0, {doubtful['zero_amount_lines']:,} (see the step's summary)")
    return {"rows": len(rows), "cutoffs": len(counts), **doubtful}
