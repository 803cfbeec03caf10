"""The audit trail: an append-only JSONL log in which every record holds the hash of the one before.

Each line is one JSON record: its number (`seq`, from 1), when (`at`, UTC), who (`actor`:
$FLOWLINE_ACTOR, else user@host), the `action` (pipeline_run, package, gate_decision,
deployment, promotion, rollback, ...), `what` it concerned, `previous` (the hash of the
line before; zeros for the first) and its own `hash` (sha256 of the record without it).

`verify` walks the chain: an edited line no longer matches its hash, a removed or
reordered line breaks the numbering and the link to the line before. It names the first
bad line. (Cutting lines off the end leaves a valid, shorter chain: keep a copy of the
last hash elsewhere to detect that.)
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

ACTOR_ENV = "FLOWLINE_ACTOR"
AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64


class AuditError(ValueError):
    """The audit log is not an unbroken chain; the message names the first bad line."""


def current_actor() -> str:
    """Who is acting: $FLOWLINE_ACTOR (set it in CI and in pipeline pods), else user@host."""
    return os.environ.get(ACTOR_ENV) or f"{getpass.getuser()}@{socket.gethostname()}"


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the record's canonical JSON, without its own `hash`."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def append(log_path: str | Path, action: str, what: Mapping[str, Any], actor: Optional[str] = None) -> dict:
    """Add one record at the end of the log (created if absent), chained to the last one; return it.

    The file is locked while the last record is read and the new one written, so that
    concurrent writers cannot fork the chain.
    """
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.seek(0)
        lines = log.read().splitlines()
        last = json.loads(lines[-1]) if lines else None
        record = {
            "seq": last["seq"] + 1 if last else 1,
            "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "actor": actor or current_actor(),
            "action": action,
            "what": dict(what),
            "previous": last["hash"] if last else GENESIS,
        }
        record["hash"] = record_hash(record)
        log.seek(0, os.SEEK_END)
        log.write(json.dumps(record, sort_keys=True) + "\n")
        log.flush()
        os.fsync(log.fileno())
    return record


def verify(log_path: str | Path) -> list[dict]:
    """Check the whole chain; return its records, or raise AuditError naming the first bad line."""
    path = Path(log_path)
    if not path.is_file():
        raise AuditError(f"{path}: no audit log here")
    records, previous = [], GENESIS
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path}: line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AuditError(f"{where} is not a JSON record") from None
        if not isinstance(record, dict) or not {"seq", "hash", "previous"} <= set(record):
            raise AuditError(f"{where} is not an audit record")
        if record["hash"] != record_hash(record):
            raise AuditError(f"{where} was edited: its content does not match its hash")
        if record["seq"] != number:
            raise AuditError(f"{where} holds record {record['seq']}: a record was removed or moved before it")
        if record["previous"] != previous:
            raise AuditError(f"{where} does not follow the line before it: a record was removed or moved")
        records.append(record)
        previous = record["hash"]
    return records
