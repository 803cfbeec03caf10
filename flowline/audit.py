"""The audit trail: an append-only log in which every record holds the hash of the one before.

Each record is one JSON object: its number (`seq`, from 1), when (`at`, UTC), who
(`actor`: $FLOWLINE_ACTOR, else user@host), the `action` (pipeline_run, package,
gate_decision, deployment, promotion, rollback, erasure, ...), `what` it concerned,
`previous` (the hash of the record before; zeros for the first) and its own `hash`
(sha256 of the record without it).

It lives in one of two places, with the same records and the same checks:
- locally, a JSONL file (`runs/audit.jsonl`), one record per line, appended under a
  file lock;
- on a cluster, object storage: `s3://bucket/prefix` holds one object per record,
  `<seq, 12 digits>.json`, each created only if absent (a conditional PUT,
  `If-None-Match: *`), so no writer can overwrite a record, and two writers racing for
  the same number cannot both win: the loser reads the new end and tries again.

`verify` walks the chain: an edited record no longer matches its hash, a removed or
reordered one breaks the numbering and the link to the one before. It names the first
bad line (or object). (Cutting records off the end leaves a valid, shorter chain: keep
a copy of the last hash elsewhere to detect that.)
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
from typing import Any, Iterator, Mapping, Optional

from flowline.storage import S3Location, StorageError, is_s3, read_object, s3_client

ACTOR_ENV = "FLOWLINE_ACTOR"
AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64
APPEND_ATTEMPTS = 20  # object storage: how often a writer that lost a race for the next number retries


class AuditError(ValueError):
    """The audit log is not an unbroken chain; the message names the first bad line."""


def current_actor() -> str:
    """Who is acting: $FLOWLINE_ACTOR (set it in CI and in pipeline pods), else user@host."""
    return os.environ.get(ACTOR_ENV) or f"{getpass.getuser()}@{socket.gethostname()}"


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the record's canonical JSON, without its own `hash`."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _next_record(last: Optional[Mapping[str, Any]], action: str, what: Mapping[str, Any],
                 actor: Optional[str]) -> dict:
    record = {
        "seq": last["seq"] + 1 if last else 1,
        "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "actor": actor or current_actor(),
        "action": action,
        "what": dict(what),
        "previous": last["hash"] if last else GENESIS,
    }
    record["hash"] = record_hash(record)
    return record


def _encoded(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def append(log: str | Path, action: str, what: Mapping[str, Any], actor: Optional[str] = None) -> dict:
    """Add one record at the end of the log (a file path, or s3://bucket/prefix), chained to the last one;
    return it. Concurrent writers cannot fork the chain (a file lock; conditional creates in object storage)."""
    if is_s3(str(log)):
        return _append_object(S3Location.parse(str(log)), action, what, actor)
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        lines = file.read().splitlines()
        record = _next_record(json.loads(lines[-1]) if lines else None, action, what, actor)
        file.seek(0, os.SEEK_END)
        file.write(_encoded(record) + "\n")
        file.flush()
        os.fsync(file.fileno())
    return record


def _object_name(location: S3Location, seq: int) -> str:
    return location.key(f"{seq:012d}.json")


def _object_keys(client, location: S3Location) -> list[str]:
    prefix = location.key("")
    return sorted(item.object_name for item in client.list_objects(location.bucket, prefix=prefix)
                  if item.object_name.endswith(".json"))


def _read_object(client, location: S3Location, key: str) -> str:
    return read_object(client, location.bucket, key).decode("utf-8")


def _create_if_absent(client, location: S3Location, key: str, text: str) -> bool:
    """PUT the object only if no object has that name; False when another writer got there first."""
    from minio.error import S3Error

    body = text.encode("utf-8")
    try:
        # minio-py's put_object cannot send If-None-Match; its request method signs any header.
        client._execute("PUT", location.bucket, key, body=body,
                        headers={"If-None-Match": "*", "Content-Type": "application/json",
                                 "Content-Length": str(len(body))})
    except S3Error as error:
        if error.code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        raise
    return True


def _append_object(location: S3Location, action: str, what: Mapping[str, Any], actor: Optional[str]) -> dict:
    from minio.error import S3Error

    client = s3_client()
    try:
        for _ in range(APPEND_ATTEMPTS):
            keys = _object_keys(client, location)
            last = json.loads(_read_object(client, location, keys[-1])) if keys else None
            record = _next_record(last, action, what, actor)
            if _create_if_absent(client, location, _object_name(location, record["seq"]), _encoded(record)):
                return record
    except S3Error as error:
        raise StorageError(f"audit log {location}: {error.code}: {error.message}") from None
    raise AuditError(f"audit log {location}: other writers took the next record number {APPEND_ATTEMPTS} times "
                     "running; nothing was written")


def _entries(log: str | Path) -> Iterator[tuple[str, str]]:
    """(where, text) of every record in order: file lines, or objects by name."""
    if is_s3(str(log)):
        from minio.error import S3Error

        location = S3Location.parse(str(log))
        client = s3_client()
        try:
            keys = _object_keys(client, location)
            if not keys:
                raise AuditError(f"{location}: no audit log here")
            for key in keys:
                yield f"{location.bucket}/{key}", _read_object(client, location, key)
        except S3Error as error:
            raise StorageError(f"audit log {location}: {error.code}: {error.message}") from None
        return
    path = Path(log)
    if not path.is_file():
        raise AuditError(f"{path}: no audit log here")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        yield f"{path}: line {number}", line


def verify(log: str | Path) -> list[dict]:
    """Check the whole chain; return its records, or raise AuditError naming the first bad line (or object)."""
    records, previous = [], GENESIS
    for number, (where, text) in enumerate(_entries(log), 1):
        try:
            record = json.loads(text)
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
