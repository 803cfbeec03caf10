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


def customer_rows_files(use_case: UseCase, dataset_file: str, rows_file: str, summary_file: str) -> dict:
    """Read the ingested log, write the customer rows (Parquet) and their summary (Markdown)."""
    rows = build_customer_rows(pd.read_parquet(dataset_file), use_case)
    rows.to_parquet(rows_file)
    with open(summary_file, "w") as out:
        out.write(summary_markdown(rows, use_case))
    counts = rows.groupby(CUTOFF_COLUMN).size().to_dict()
    print("customer-rows: " + ", ".join(f"{n} at {cutoff}" for cutoff, n in counts.items()))
    return {"rows": len(rows), "cutoffs": len(counts)}
