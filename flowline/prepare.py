"""The first half of every run, in one call: read the data, hold it to the contract, build customer
rows from a transaction log, and split.

The pipeline runs the same functions one step at a time (ingest, customer-rows, split), each writing
its part for the next; the Katib trial and the demo need the parts in memory and call `prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from flowline.contract import apply_contract, read_use_case_table
from flowline.customer_rows import build_customer_rows, customer_rows_use_case
from flowline.splitting import split_frame
from flowline.use_case import UseCase


@dataclass(frozen=True)
class Prepared:
    """The split parts (train, valid, test) and the use case they follow: for a transaction log, the
    customer rows' use case (customer_rows.py)."""

    use_case: UseCase
    parts: dict[str, pd.DataFrame]


def prepare(use_case: UseCase, source: str = "") -> Prepared:
    """Read `source` (default: the use case's own data), keep the rows the contract accepts, build
    customer rows for a transaction log, and split them as the pipeline does."""
    kept = apply_contract(read_use_case_table(use_case, source).frame, use_case).kept
    if use_case.transactions:
        kept, use_case = build_customer_rows(kept, use_case), customer_rows_use_case(use_case)
    return Prepared(use_case, split_frame(kept, use_case))
