"""The split step's work: split the rows (flowline/splitting.py) and write each part."""

from __future__ import annotations

import pandas as pd

from flowline.splitting import split_frame
from flowline.use_case import UseCase


def split_files(use_case: UseCase, dataset_file: str, outputs: dict[str, str]) -> dict[str, int]:
    """Split the ingested Parquet file into the three output files; return their row counts."""
    parts = split_frame(pd.read_parquet(dataset_file), use_case)
    for name, part in parts.items():
        part.to_parquet(outputs[name])
    counts = {name: len(part) for name, part in parts.items()}
    print(f"split ({use_case.split.method}): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts
