"""The ingest step's work: read the source, hold it to the contract (flowline/contract.py), and write
the kept rows, the quarantine with reasons and the data profile."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from flowline.contract import (apply_contract, check_encoding, check_undeclared, enforce_bad_fraction,
                               read_use_case_table, undeclared_columns)
from flowline.use_case import UseCase


def profile(frame: pd.DataFrame, use_case: UseCase) -> dict[str, dict]:
    """Per-column statistics of the kept rows.

    Columns that name a person or an account (`use_case.subject_columns`) get counts only:
    their values would be personal data in a report that erasure cannot edit, so they
    never enter it.
    """
    columns: dict[str, dict] = {}
    for name in frame.columns:
        values = frame[name]
        role = "label" if name == use_case.label.column else "id" if name in use_case.subject_columns else "feature"
        stats: dict = {"missing": int(values.isna().sum()), "unique": int(values.nunique())}
        if role != "id" and pd.api.types.is_numeric_dtype(values) and values.notna().any():
            stats.update(
                min=float(values.min()), mean=float(values.mean()), std=float(values.std(ddof=0)),
                max=float(values.max()),
            )
        elif role != "id":
            stats["top"] = {str(k): int(v) for k, v in values.value_counts().head(5).items()}
        stats["role"] = role
        columns[name] = stats
    return columns


def profile_markdown(columns: dict[str, dict], rows_in: int, rows_kept: int, rows_quarantined: int,
                     undeclared: Sequence[str] = ()) -> str:
    lines = [
        f"**Rows:** {rows_in} in, {rows_kept} kept, {rows_quarantined} quarantined",
        "",
        *([f"**Undeclared columns (not used):** {', '.join(undeclared)}", ""] if undeclared else []),
        "| column | role | missing | unique | min | mean | max | top values |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in columns.items():
        numbers = [f"{s[k]:.4g}" if k in s else "" for k in ("min", "mean", "max")]
        top = ", ".join(f"{k} ({v})" for k, v in s.get("top", {}).items())
        lines.append(f"| {name} | {s['role']} | {s['missing']} | {s['unique']} | {' | '.join(numbers)} | {top} |")
    return "\n".join(lines) + "\n"


def ingest_to_files(
    use_case: UseCase, source: str, dataset_file: str, quarantine_file: str, profile_file: str,
    quarantine_uri: str = "",
) -> dict:
    """Read, check and write the kept rows, the quarantine and the profile; return the counts.

    The outputs are written before the bad-row check, so a failed run still leaves the
    quarantine to look at: on a cluster it is put at `quarantine_uri`, the step's artifact URI, before the step
    fails, since KFP uploads the outputs of a step that succeeds only.
    """
    raw = read_use_case_table(use_case, source)
    check_encoding(raw)
    undeclared = undeclared_columns(raw.frame, use_case)
    check_undeclared(undeclared, use_case)
    result = apply_contract(raw.frame, use_case, raw.malformed)
    result.kept.to_parquet(dataset_file)
    result.quarantined.to_parquet(quarantine_file)
    counts = {
        "rows_in": result.rows_in,
        "rows_kept": len(result.kept),
        "rows_quarantined": len(result.quarantined),
    }
    columns = profile(result.kept, use_case)
    Path(profile_file).write_text(profile_markdown(columns, **counts, undeclared=undeclared))
    print(
        f"ingest: {raw.source} (sha256 {raw.sha256[:12]}): {counts['rows_in']} rows in, "
        f"{counts['rows_kept']} kept, {counts['rows_quarantined']} quarantined"
    )
    enforce_bad_fraction(result, use_case, quarantine_file, quarantine_uri)
    return {"source": raw.source, "source_sha256": raw.sha256, **counts, "undeclared_columns": undeclared}
