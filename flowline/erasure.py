"""Erasure: removing one data subject's rows from everything a use case's local runs stored.

A subject is named by the use case's key: the first id column (churn: `customerID`), or
the entity of a transaction log (CLV: `customer_id`). Every Parquet file under the use
case's run folders (the ingested data, the quarantine, customer rows, the splits) loses
the subject's rows and keeps every other row as it was. Files without the key column are
left alone. In the quarantine, a malformed line (more or fewer fields than the header)
goes when any of its fields is the id, since its fields may sit under the wrong names.
Reports need no rewriting: ingest's profile never records the values of id or
entity columns (`UseCase.subject_columns`), only their counts.

When the subject is the entity of the use case's entity features or transaction log, its events
also go from the online store (flowline/online_store.py) that serving reads them from.

The erasure is recorded in the audit log: the fact, the sha256 of the id (never the id
or the data), the rows removed, the online events removed, and the packages that were trained on the subject (their
run's train or valid split held the subject), which must be retrained to forget it: a
model's parameters are shaped by its training rows, and a FeatureSet with entity windows
keeps each entity's earlier events.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flowline import audit
from flowline.online_store import OnlineStore
from flowline.quarantine import REASON_COLUMN, line_fields, malformed_lines
from flowline.use_case import UseCase

PARQUET_MAGIC = b"PAR1"
TRAINING_SPLITS = ("train", "valid")  # the split outputs a model learned from


class ErasureError(ValueError):
    """The use case has no key to find a subject by."""


@dataclass
class ErasureReport:
    subject_sha256: str
    rows_removed: dict[str, int] = field(default_factory=dict)  # file -> rows
    packages_trained_on_subject: list[str] = field(default_factory=list)
    online_events_removed: int = 0

    @property
    def total_rows(self) -> int:
        return sum(self.rows_removed.values())


def subject_key(use_case: UseCase) -> str:
    """The column that names a data subject."""
    if use_case.transactions:
        return use_case.transactions.entity_column
    if use_case.id_columns:
        return use_case.id_columns[0]
    raise ErasureError(f"use case {use_case.name!r} declares no id_columns: no row can be traced to a subject")


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == PARQUET_MAGIC


def _subject_rows(frame: pd.DataFrame, key: str, wanted: str, separator: str) -> pd.Series:
    """The rows of the subject: its key in the key column, or, for a quarantined malformed line (whose
    fields may sit under the wrong names), in any of its data fields, surplus ones included."""
    matches = frame[key].astype(str).str.strip() == wanted
    if REASON_COLUMN in frame.columns:
        anywhere = line_fields(frame, separator).map(lambda fields: wanted in fields).astype(bool)
        matches |= malformed_lines(frame) & anywhere
    return matches


def erase_subject(use_case: UseCase, subject_id: str, runs_dir: str | Path, audit_log: str | Path,
                  online_store: OnlineStore | None = None) -> ErasureReport:
    """Remove `subject_id`'s rows from every stored dataset of `use_case` under `runs_dir`, and its events from
    `online_store` when the subject is the use case's entity; record it."""
    key = subject_key(use_case)
    wanted = str(subject_id).strip()
    report = ErasureReport(subject_sha256=hashlib.sha256(wanted.encode()).hexdigest())
    for run_dir in sorted(Path(runs_dir).glob(f"{use_case.name}-*")):
        trained_on_subject = False
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and _is_parquet(p)):
            frame = pd.read_parquet(path)
            if key not in frame.columns:
                continue
            matches = _subject_rows(frame, key, wanted, use_case.data.separator)
            if not matches.any():
                continue
            frame[~matches].to_parquet(path)
            report.rows_removed[str(path)] = int(matches.sum())
            trained_on_subject |= path.parent.name == "split" and path.name in TRAINING_SPLITS
        if trained_on_subject:
            report.packages_trained_on_subject += sorted(
                str(p.parent) for p in run_dir.glob("*/package/model_package/manifest.json"))
    # the key is a transaction log's entity, or maybe the entity of the entity features: the store's events
    if online_store is not None and (use_case.transactions or key == use_case.features.entity_column):
        report.online_events_removed = online_store.erase(use_case.entity_definition, wanted)
    audit.append(audit_log, "erasure", {
        "use_case": use_case.name, "subject_sha256": report.subject_sha256, "key": key,
        "rows_removed": report.total_rows, "files": len(report.rows_removed),
        "online_events_removed": report.online_events_removed,
        "packages_trained_on_subject": report.packages_trained_on_subject})
    return report
