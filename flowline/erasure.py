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
also go from the online store (flowline/online_store.py) that serving reads them from. Batch scoring's
scores and quarantines (anywhere on disk; the audit log records each run's files) lose the subject's
rows too. What erasure cannot edit is listed as copies left: a run's drift reference (`x_ref.npy`, raw
training rows, inside its package and beside it) and its package's fingerprints of its training rows
(`fitted_rows.npy`, a hash of each row's ids) when the run trained on the subject, and batch outputs
in object storage. Nor does it edit the use case's own data (`source`), which the next run reads again.

The erasure is recorded in the audit log: the fact, a hash of the id (`subject_hash`: keyed with
$FLOWLINE_AUDIT_KEY where it is set, so that no one without the key can match it against a list of
ids; never the id or the data), the rows removed, the online events removed, and the packages that
were trained on the subject (their run's train or valid split held the subject), which must be
retrained to forget it: a model's parameters are shaped by its training rows, and a FeatureSet with
entity windows keeps each entity's earlier events. The log is checked before any file is touched, and
erasing a subject again reports what its earlier erasures found that still stands.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flowline import audit
from flowline.contract import number_from_text, resolve_source
from flowline.fitted_rows import FITTED_ROWS_FILE
from flowline.online_store import OnlineStore
from flowline.quarantine import REASON_COLUMN, line_fields, malformed_lines
from flowline.use_case import UseCase

PARQUET_MAGIC = b"PAR1"
TRAINING_SPLITS = ("train", "valid")  # the split outputs a model learned from


class ErasureError(ValueError):
    """The use case has no key to find a subject by."""


@dataclass
class ErasureReport:
    subject: str  # "hmac-sha256:<hex>" keyed with $FLOWLINE_AUDIT_KEY, else "sha256:<hex>" (`subject_hash`)
    rows_removed: dict[str, int] = field(default_factory=dict)  # file -> rows
    packages_trained_on_subject: list[str] = field(default_factory=list)
    online_events_removed: int = 0
    copies_left: list[str] = field(default_factory=list)  # files that may hold the subject, which erasure cannot edit
    source: str = ""  # the use case's data, which its next run reads: erasure does not edit a source
    erased_before: list[str] = field(default_factory=list)  # when the subject was erased before (UTC)

    @property
    def total_rows(self) -> int:
        return sum(self.rows_removed.values())


def subject_hash(subject_id: str, key: bytes | None) -> str:
    """How the audit log names a subject: an HMAC-SHA256 of the id under the audit key, which no one without the
    key can match against a list of ids; without a key, its sha256, which anyone holding such a list can."""
    if key is None:
        return "sha256:" + hashlib.sha256(subject_id.encode()).hexdigest()
    return "hmac-sha256:" + hmac.new(key, f"erasure-subject:{subject_id}".encode(), hashlib.sha256).hexdigest()


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
    fields may sit under the wrong names), in any of its data fields, surplus ones included. A key column the
    contract read as numbers (an integer id is stored as 1001.0) is compared as numbers."""
    column = frame[key]
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        matches = column == number_from_text(wanted)  # NaN, a wanted id that is no number, matches nothing
    else:
        matches = column.astype(str).str.strip() == wanted
    if REASON_COLUMN in frame.columns:
        anywhere = line_fields(frame, separator).map(lambda fields: wanted in fields).astype(bool)
        matches |= malformed_lines(frame) & anywhere
    return matches


def erase_subject(use_case: UseCase, subject_id: str, runs_dir: str | Path, audit_log: str | Path,
                  online_store: OnlineStore | None = None) -> ErasureReport:
    """Remove `subject_id`'s rows from every stored dataset of `use_case` under `runs_dir`, and its events from
    `online_store` when the subject is the use case's entity; record it. The audit log is checked before any
    file is touched: an erasure that cannot be recorded is not made. What earlier erasures of the subject
    found still standing (packages trained on it, copies left) is reported again."""
    key = subject_key(use_case)
    wanted = str(subject_id).strip()
    if not wanted:
        raise ErasureError("an empty id: give the subject's id (the use case's first id column, or its entity)")
    records = _records(audit_log)
    report = ErasureReport(subject=subject_hash(wanted, audit.audit_key()), source=resolve_source(use_case))
    for run_dir in sorted(Path(runs_dir).glob(f"{use_case.name}-*")):
        trained_on_subject = tested_on_subject = False
        for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and _is_parquet(p)):
            removed = _erase_from(path, key, wanted, use_case.data.separator)
            if removed:
                report.rows_removed[str(path)] = removed
                trained_on_subject |= path.parent.name == "split" and path.name in TRAINING_SPLITS
                tested_on_subject |= path.parent.name == "split" and path.name == "test"
        if trained_on_subject:
            report.packages_trained_on_subject += sorted(
                str(p.parent) for p in run_dir.glob("*/package/model_package/manifest.json"))
            report.copies_left += sorted(str(path) for name in ("x_ref.npy", FITTED_ROWS_FILE)
                                         for path in run_dir.rglob(name))
        if tested_on_subject:  # the explain step keeps raw values of test rows, without ids
            report.copies_left += sorted({str(p) for p in [*run_dir.rglob("explanation*"), *run_dir.glob("*/explain/*")]
                                          if p.is_file() and p.name != "executor_output.json"})
    for output in _batch_outputs(records, use_case):
        # Remote outputs cannot be edited here; a relative path (recorded before outputs were made absolute)
        # that is not found from this folder may still exist from another.
        if "://" in output or not (Path(output).is_absolute() or Path(output).is_file()):
            report.copies_left.append(output)
        elif Path(output).is_file() and _is_parquet(Path(output)):
            removed = _erase_from(Path(output), key, wanted, use_case.data.separator)
            if removed:
                report.rows_removed[output] = removed
    _still_standing_from_earlier(report, records, use_case, wanted)
    # the key is a transaction log's entity, or maybe the entity of the entity features: the store's events
    if online_store is not None and (use_case.transactions or key == use_case.features.entity_column):
        report.online_events_removed = online_store.erase(use_case.entity_definition, wanted)
    audit.append(audit_log, "erasure", {
        "use_case": use_case.name, "subject": report.subject, "key": key,
        "rows_removed": report.total_rows, "files": len(report.rows_removed),
        "online_events_removed": report.online_events_removed,
        "packages_trained_on_subject": report.packages_trained_on_subject, "copies_left": report.copies_left,
        "source": report.source})
    return report


def _records(audit_log: str | Path) -> list[dict]:
    """The audit log's records, verified (an AuditError before anything is erased); none where there is no log."""
    try:
        return audit.read(audit_log)
    except audit.NoAuditLog:
        return []


def _still_standing_from_earlier(report: ErasureReport, records: list[dict], use_case: UseCase, wanted: str) -> None:
    """Add what earlier erasures of the subject named that still exists: a second erasure finds no row, so
    without them it would say that no package was trained on the subject. Records written before subjects
    were keyed name them by `subject_sha256`."""
    plain = hashlib.sha256(wanted.encode()).hexdigest()
    for record in records:
        what = record["what"]
        if (record["action"] == "erasure" and what.get("use_case") == use_case.name
                and (what.get("subject") == report.subject or what.get("subject_sha256") == plain)):
            report.erased_before.append(record["at"])
            report.packages_trained_on_subject += [package for package in what.get("packages_trained_on_subject", [])
                                                   if Path(package).is_dir()]
            report.copies_left += [copy for copy in what.get("copies_left", [])
                                   if "://" in copy or not Path(copy).is_absolute() or Path(copy).exists()]
    report.packages_trained_on_subject = list(dict.fromkeys(report.packages_trained_on_subject))
    report.copies_left = list(dict.fromkeys(report.copies_left))


def _erase_from(path: Path, key: str, wanted: str, separator: str) -> int:
    """Rewrite the Parquet file at `path` without the subject's rows; how many went (0: left untouched). The new
    file replaces the old whole (written beside it, then renamed): a kill or a full disk part-way leaves the old
    one, never half of either."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ErasureError(f"{path}: cannot be read as Parquet ({error}); it may hold the subject's rows: restore or "
                           "remove it, then erase again") from None
    if key not in frame.columns:
        return 0
    matches = _subject_rows(frame, key, wanted, separator)
    if matches.any():
        staged = path.with_name(f".{path.name}.erasing")
        try:
            frame[~matches].to_parquet(staged)
            os.chmod(staged, path.stat().st_mode & 0o7777)
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
    return int(matches.sum())


def _batch_outputs(records: list[dict], use_case: UseCase) -> list[str]:
    """The scores and quarantine files the use case's batch runs wrote, as the audit log records them."""
    return sorted({record["what"][name] for record in records
                   if record["action"] == "batch_scoring" and record["what"].get("use_case") == use_case.name
                   for name in ("output", "quarantine") if record["what"].get(name)})
