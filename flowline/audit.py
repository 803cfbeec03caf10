"""The audit trail: an append-only log in which every record holds the hash of the one before.

Each record is one JSON object: its number (`seq`, from 1), when (`at`, UTC), who
(`actor`: $FLOWLINE_ACTOR, else user@host), the `action` (pipeline_run, package,
gate_decision, deployment, promotion, rollback, erasure, ...), `what` it concerned,
`previous` (the hash of the record before; zeros for the first), its own `hash`
(sha256 of the record without `hash` and `signature`) and, when the writer holds the key
$FLOWLINE_AUDIT_KEY (from a Kubernetes Secret on a cluster), a `signature`: HMAC-SHA256 of
its number and hash under that key. Without the key, recomputing the hashes after an edit
gives a chain that verifies: the log then only shows accidents, and both `append` and
`verify` warn so.

The chain's end is anchored outside the log, in a head: the last record's number and
hash (signed, under another label than records, so a record's signature cannot stand in
for it). Cutting records off the end, or adding one after it, no longer matches the head.

It lives in one of two places, with the same records and the same checks:
- locally, a JSONL file (`runs/audit.jsonl`), one record per line, appended under a
  file lock, with its head beside it (`runs/audit.jsonl.head`, replaced atomically);
- on a cluster, object storage: `s3://bucket/prefix` holds one object per record,
  `<seq, 12 digits>.json`, and one head per record, `heads/<seq, 12 digits>.json` (the
  newest is the head), each created only if absent (a conditional PUT,
  `If-None-Match: *`), so no writer overwrites a record, and two writers racing for the
  same number cannot both win: the loser reads the new end and tries again. In a bucket
  with versioning, an overwritten or deleted record leaves a version behind, and `verify`
  names it; object lock (a default retention on the bucket) makes deleting it impossible.
  Without either, someone who may delete objects can remove the last records together with
  their heads, and what is left still verifies: give the audit bucket versioning or object
  lock, and its writers no delete permission.

`verify` walks the chain: an edited record no longer matches its hash or signature, a
removed or reordered one breaks the numbering and the link to the one before, and the
end must match the head. It names the first bad line (or object). A writer that stopped
between a record and its head leaves the log one record past its head: the next `append`
writes that head (the record must chain to the head and carry a valid signature), and
so does a reader of the registry (`repair_head`); until then `verify` reports it. A write
that failed part-way (a full disk) is undone, and a last line a crash cut short is dropped by
the next write (a reader leaves it out and in place, and `verify` reports it).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import hmac
import json
import os
import socket
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Optional

from flowline.package.signing import signed_json
from flowline.storage import S3Location, StorageError, is_s3, new_file_mode, read_object, s3_client

ACTOR_ENV = "FLOWLINE_ACTOR"
KEY_ENV = "FLOWLINE_AUDIT_KEY"
POD_SECRET = "flowline-audit"  # the Kubernetes Secret whose KEY_ENV key reaches the pods that write records
AUDIT_FILE = "audit.jsonl"
HEAD_SUFFIX = ".head"
HEADS = "heads"  # object storage: the folder of heads under the log's prefix
GENESIS = "0" * 64
APPEND_ATTEMPTS = 20  # object storage: how often a writer that lost a race for the next number retries
UNSIGNED = (f"${KEY_ENV} is not set: audit records are not signed, so the log only shows accidental edits; "
            "anyone who can write it can edit it and recompute the hashes")


class AuditError(ValueError):
    """The audit log is not an unbroken chain; the message names the first bad line."""


class NoAuditLog(AuditError):
    """Nothing of an audit log where one was looked for: neither records nor a head (a wrong path, or no run yet)."""


class AuditRepairWarning(UserWarning):
    """What a writer that stopped part-way left was completed or dropped (see `repair_head`)."""


class UnsignedAuditWarning(UserWarning):
    """The log is written or checked without $FLOWLINE_AUDIT_KEY."""


def current_actor() -> str:
    """Who is acting: $FLOWLINE_ACTOR (set it in CI and in pipeline pods), else user@host."""
    return os.environ.get(ACTOR_ENV) or f"{getpass.getuser()}@{socket.gethostname()}"


def audit_key() -> Optional[bytes]:
    """The signing key, $FLOWLINE_AUDIT_KEY; None (with a warning) when it is not set."""
    key = os.environ.get(KEY_ENV)
    if not key:
        # From this line, whoever called: Python's default filter shows it once per process, not once per caller
        # (a run appends three records, and a notebook runs many).
        warnings.warn(UNSIGNED, UnsignedAuditWarning, stacklevel=1)
        return None
    return key.encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 of the record's canonical JSON, without its own `hash` and `signature`."""
    body = {key: value for key, value in record.items() if key not in ("hash", "signature")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _signature(key: bytes, label: str, item: Mapping[str, Any]) -> str:
    """HMAC-SHA256 of a record's or head's number and hash; the label keeps the two apart."""
    return hmac.new(key, f"{label}:{item['seq']}:{item['hash']}".encode(), hashlib.sha256).hexdigest()


def _signed(item: dict, label: str, key: Optional[bytes]) -> dict:
    if key is not None:
        item["signature"] = _signature(key, label, item)
    return item


def _check_signature(where: str, item: Mapping[str, Any], label: str, key: Optional[bytes]) -> None:
    if key is None:
        if "signature" in item:
            raise AuditError(f"{where} is signed: set ${KEY_ENV} to check it and to write after it")
        return
    if "signature" not in item:
        raise AuditError(f"{where} is not signed, but ${KEY_ENV} is set: it was written without the key, "
                         "or its signature was removed")
    # Bytes, not str: compare_digest raises TypeError on a non-ASCII str, which a forger controls.
    if not hmac.compare_digest(str(item["signature"]).encode(), _signature(key, label, item).encode()):
        raise AuditError(f"{where}: its signature does not match ${KEY_ENV}: it was forged, or signed with another key")


def _head_of(record: Mapping[str, Any], key: Optional[bytes]) -> dict:
    return _signed({"seq": record["seq"], "hash": record["hash"]}, "head", key)


def _parse(where: str, text: str, fields: set[str]) -> dict:
    """One JSON object holding `fields`, or an AuditError naming where it came from."""
    try:
        item = signed_json(text)
    except json.JSONDecodeError:
        raise AuditError(f"{where} is not a JSON record") from None
    except ValueError as error:  # a key twice: what a reader sees is not what the hash covers
        raise AuditError(f"{where} is not an audit record: {error}") from None
    if not isinstance(item, dict) or not fields <= set(item):
        raise AuditError(f"{where} is not an audit record")
    return item


def _check_record(where: str, record: Mapping[str, Any], key: Optional[bytes]) -> None:
    if record["hash"] != record_hash(record):
        raise AuditError(f"{where} was edited: its content does not match its hash")
    _check_signature(where, record, "record", key)


def _check_end(last: Optional[dict], head: Optional[dict], head_where: str, key: Optional[bytes]) -> None:
    """The log must end at the record its head names."""
    if last is None:
        raise AuditError(f"{head_where} names record {head['seq']}, but the log holds none: its records were removed")
    if head is None:
        raise AuditError(f"{head_where} is missing, but the log holds records: records cut off its end "
                         "could not be seen. It was removed, or the log was written before heads existed: "
                         "then `flowline audit anchor` checks the chain and anchors its end")
    _check_signature(head_where, head, "head", key)
    if (head["seq"], head["hash"]) != (last["seq"], last["hash"]):
        raise AuditError(f"{head_where} names record {head['seq']} ({head['hash'][:16]}) as the last, but the log "
                         f"ends at record {last['seq']} ({last['hash'][:16]}): records were cut off its end, "
                         "or written after it")


def _head_to_repair(last: Optional[dict], last_where: str, head: Optional[dict], head_where: str,
                    key: Optional[bytes]) -> Optional[dict]:
    """Before an append: check the end of the log; return the head of its last record if a writer
    stopped between writing that record and its head (so the next writer writes it), else None."""
    if last is None and head is None:
        return None
    if last is not None:
        _check_record(last_where, last, key)
    if head is not None and last is not None and head["seq"] == last["seq"] - 1 and head["hash"] == last["previous"]:
        _check_signature(head_where, head, "head", key)
        return _head_of(last, key)
    _check_end(last, head, head_where, key)
    return None


def _next_record(last: Optional[Mapping[str, Any]], action: str, what: Mapping[str, Any],
                 actor: Optional[str], key: Optional[bytes]) -> dict:
    record = {
        "seq": last["seq"] + 1 if last else 1,
        "at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "actor": actor or current_actor(),
        "action": action,
        "what": dict(what),
        "previous": last["hash"] if last else GENESIS,
    }
    record["hash"] = record_hash(record)
    return _signed(record, "record", key)


def _encoded(item: Mapping[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


def append(log: str | Path, action: str, what: Mapping[str, Any], actor: Optional[str] = None) -> dict:
    """Add one record at the end of the log (a file path, or s3://bucket/prefix), chained to the last one and
    signed with $FLOWLINE_AUDIT_KEY, then move the head to it; return it. Refuses a log that does not end at
    its head. Concurrent writers cannot fork the chain (a file lock; conditional creates in object storage)."""
    key = audit_key()
    if is_s3(str(log)):
        return _append_object(S3Location.parse(str(log)), action, what, actor, key)
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)
    head_path = head_file(path)
    with open(path, "a+b") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        head = _read_head_file(head_path)
        lines = _whole_lines(path, file, head)
        last_where = f"{path}: line {len(lines)}"
        last = _parse(last_where, lines[-1], {"seq", "hash", "previous"}) if lines else None
        _head_to_repair(last, last_where, head, str(head_path), key)
        record = _next_record(last, action, what, actor, key)
        end = file.tell()
        try:  # all or nothing: a failed write (a full disk) leaves the log and its head as they were
            file.write((_encoded(record) + "\n").encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
            _write_head_file(head_path, _head_of(record, key))
        except BaseException:
            file.truncate(end)
            raise
    return record


def _whole_lines(path: Path, file, head: Optional[dict], repair: bool = True) -> list[str]:
    """The lines of a log opened "a+b" and locked, the file left at its end. A last line without its line
    break is a write cut short (a crash or a full disk): never acknowledged, so not named by `head`, it is
    dropped with a warning. One that is whole JSON only lost its line break, which is given back. A cut line
    that the head names was acknowledged and damaged later: AuditError, and nothing is dropped. Without
    `repair` (a reader) the file is left as it is and a cut last line is left out of the lines."""
    file.seek(0)
    data = file.read()
    whole = data[:data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        if _is_json(data[len(whole):]):
            if repair:
                file.write(b"\n")
        else:
            cut = whole.count(b"\n") + 1  # its record's number: one record a line, from 1
            if _written(head, cut):
                raise AuditError(f"{path}: line {cut} is cut short, but {head_file(path).name} names record "
                                 f"{head['seq']} as written: the log was damaged after it was written") from None
            if repair:
                warnings.warn(f"{path}: dropped an incomplete last line ({len(data) - len(whole)} bytes), a write "
                              "that was cut short", AuditRepairWarning, stacklevel=3)
                file.truncate(len(whole))
            data = whole
        if repair:
            file.flush()
            os.fsync(file.fileno())
    file.seek(0, os.SEEK_END)
    return data.decode("utf-8").splitlines()


def _written(head: Optional[dict], line: int) -> bool:
    """Whether `head` names the record on `line` (one record a line, from 1) as written: acknowledged, so a cut
    there is damage, not a write that stopped part-way."""
    return head is not None and isinstance(head.get("seq"), int) and head["seq"] >= line


def _is_json(data: bytes | str) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def repair_head(log: str | Path) -> bool:
    """What the next `append` would do first that a reader may: under the lock, write the head that a writer
    stopped before (the record must chain to the head and pass its checks). True when it wrote a head. A last line
    cut short is left in place (only a writer drops it), and a log that is otherwise wrong, or that this user
    cannot write, is left for `verify` to name."""
    path = Path(log)
    if is_s3(str(log)) or not path.is_file():
        return False
    key = audit_key()
    head_path = head_file(path)
    try:
        with open(path, "a+b") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            head = _read_head_file(head_path)
            lines = _whole_lines(path, file, head, repair=False)
            if not lines:
                return False
            last_where = f"{path}: line {len(lines)}"
            last = _parse(last_where, lines[-1], {"seq", "hash", "previous"})
            head = _head_to_repair(last, last_where, head, str(head_path), key)
            if head is None:
                return False
            _write_head_file(head_path, head)
    except (AuditError, OSError):
        return False
    warnings.warn(f"{head_path}: wrote the head of record {head['seq']}, which a writer stopped before",
                  AuditRepairWarning, stacklevel=2)
    return True


def head_file(log: Path) -> Path:
    """Where a log file's head lives: beside it, `<log>.head`."""
    return log.with_name(log.name + HEAD_SUFFIX)


def _read_head_file(path: Path) -> Optional[dict]:
    return _parse(str(path), path.read_text(encoding="utf-8"), {"seq", "hash"}) if path.is_file() else None


def _write_head_file(path: Path, head: Mapping[str, Any]) -> None:
    """Replace the head atomically: a reader sees the old head or the new one, never half of one."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, delete=False, encoding="utf-8") as file:
        file.write(_encoded(head) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.chmod(file.name, new_file_mode())  # readable as the log is, so others can verify it
    os.replace(file.name, path)


def _object_name(location: S3Location, seq: int) -> str:
    return location.key(f"{seq:012d}.json")


def _head_name(location: S3Location, seq: int) -> str:
    return location.key(f"{HEADS}/{seq:012d}.json")


def _object_keys(client, location: S3Location) -> tuple[list[str], list[str]]:
    """The record and head objects under the log's prefix, each sorted by number.

    Lists every version, so that in a versioned bucket a record or head that was overwritten with other
    content, or deleted (a delete marker), is an AuditError naming it."""
    versions: dict[str, list] = {}
    for item in client.list_objects(location.bucket, prefix=location.key(""), recursive=True, include_version=True):
        if item.object_name.endswith(".json"):
            versions.setdefault(item.object_name, []).append(item)
    for name, items in sorted(versions.items()):
        if any(item.is_delete_marker for item in items):
            raise AuditError(f"{location.bucket}/{name} was deleted: the bucket keeps its versions")
        if len({item.etag for item in items}) > 1:
            raise AuditError(f"{location.bucket}/{name} was overwritten: the bucket keeps {len(items)} versions of it")
    relative = {name: name.removeprefix(location.key("")) for name in versions}
    return (sorted(name for name, rest in relative.items() if "/" not in rest),
            sorted(name for name, rest in relative.items() if rest.startswith(f"{HEADS}/") and rest.count("/") == 1))


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


def _read_last(client, location: S3Location, keys: list[str], fields: set[str]) -> tuple[Optional[dict], str]:
    """The newest record (or head) and where it is."""
    if not keys:
        return None, f"{location.bucket}/{location.key(HEADS)}"
    where = f"{location.bucket}/{keys[-1]}"
    return _parse(where, _read_object(client, location, keys[-1]), fields), where


def _append_object(location: S3Location, action: str, what: Mapping[str, Any], actor: Optional[str],
                   key: Optional[bytes]) -> dict:
    from minio.error import S3Error

    client = s3_client()
    try:
        for _ in range(APPEND_ATTEMPTS):
            records, heads = _object_keys(client, location)
            last, last_where = _read_last(client, location, records, {"seq", "hash", "previous"})
            head, head_where = _read_last(client, location, heads, {"seq", "hash"})
            missing = _head_to_repair(last, last_where, head, head_where, key)
            if missing is not None:
                _create_if_absent(client, location, _head_name(location, missing["seq"]), _encoded(missing))
            record = _next_record(last, action, what, actor, key)
            if _create_if_absent(client, location, _object_name(location, record["seq"]), _encoded(record)):
                # Heads are the same bytes whoever writes them, so losing this race is fine.
                head = _head_of(record, key)
                _create_if_absent(client, location, _head_name(location, record["seq"]), _encoded(head))
                return record
    except S3Error as error:
        raise StorageError(f"audit log {location}: {error.code}: {error.message}") from None
    raise AuditError(f"audit log {location}: other writers took the next record number {APPEND_ATTEMPTS} times "
                     "running; nothing was written")


def _read_log(log: str | Path, cut_tail: bool = False) -> tuple[list[tuple[str, str]], Optional[dict], str]:
    """(where, text) of every record in order (file lines, or objects by name), the head, and where it is.
    `cut_tail`: a file's last line that is cut short (no line break, no JSON) and that the head does not name as
    written is left out, with a warning."""
    if is_s3(str(log)):
        from minio.error import S3Error

        location = S3Location.parse(str(log))
        client = s3_client()
        try:
            records, heads = _object_keys(client, location)
            if not records and not heads:
                raise NoAuditLog(f"{location}: no audit log here")
            entries = [(f"{location.bucket}/{name}", _read_object(client, location, name)) for name in records]
            head, head_where = _read_last(client, location, heads, {"seq", "hash"})
        except S3Error as error:
            raise StorageError(f"audit log {location}: {error.code}: {error.message}") from None
        return entries, head, head_where
    path = Path(log)
    if not path.is_file():
        if head_file(path).is_file():
            raise AuditError(f"{path} is gone, but its head {head_file(path)} remains: the log was removed")
        raise NoAuditLog(f"{path}: no audit log here")
    with open(path, encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_SH)  # no writer between reading the records and the head
        text = file.read()
        head = _read_head_file(head_file(path))
    lines = text.splitlines()
    if cut_tail and lines and not text.endswith("\n") and not _is_json(lines[-1]) and not _written(head, len(lines)):
        warnings.warn(f"{path}: line {len(lines)} is cut short ({len(lines[-1])} characters): a write that stopped "
                      "part-way, or an edit; left out here and left in place, for `flowline audit verify` to report "
                      "and the next write to drop", AuditRepairWarning, stacklevel=4)
        lines.pop()
    return [(f"{path}: line {number}", line) for number, line in enumerate(lines, 1)], head, str(head_file(path))


def _chain(entries: list[tuple[str, str]], key: Optional[bytes]) -> list[dict]:
    """The records of `entries` in order, each checked against its hash, its signature and the one before."""
    records, previous = [], GENESIS
    for number, (where, text) in enumerate(entries, 1):
        record = _parse(where, text, {"seq", "hash", "previous"})
        _check_record(where, record, key)
        if record["seq"] != number:
            raise AuditError(f"{where} holds record {record['seq']}: a record was removed or moved before it")
        if record["previous"] != previous:
            raise AuditError(f"{where} does not follow the line before it: a record was removed or moved")
        records.append(record)
        previous = record["hash"]
    return records


def verify(log: str | Path, cut_tail: bool = False) -> list[dict]:
    """Check the whole chain, every signature (with $FLOWLINE_AUDIT_KEY) and the head; return the records, or
    raise AuditError naming the first bad line (or object). An empty log is an error: a log holds records.
    `cut_tail`: a last line cut short is left out with a warning (a reader's view), not refused."""
    key = audit_key()
    entries, head, head_where = _read_log(log, cut_tail)
    if not entries and head is None:
        raise AuditError(f"{log} is empty: an audit log holds at least one record")
    records = _chain(entries, key)
    _check_end(records[-1] if records else None, head, head_where, key)
    return records


def read(log: str | Path) -> list[dict]:
    """The records as a reader of the runs folder takes them: after the head a writer stopped before is written
    (`repair_head`, as the next append would), `verify`'s, without a last line cut short (left in place: a
    reader changes no byte of the log). `flowline audit verify` calls `verify` alone: it reports such a log
    rather than complete it."""
    repair_head(log)
    return verify(log, cut_tail=True)


def anchor(log: str | Path) -> dict:
    """Give a log written before heads existed its head: check its chain and signatures (with
    $FLOWLINE_AUDIT_KEY as the records were written), then anchor its last record. Returns that record.
    Refuses an empty log and one that has a head already."""
    key = audit_key()
    entries, head, head_where = _read_log(log)
    if head is not None:
        raise AuditError(f"{head_where} exists: the log is anchored already (`flowline audit verify` checks it)")
    records = _chain(entries, key)
    if not records:
        raise AuditError(f"{log} is empty: there is nothing to anchor")
    last = records[-1]
    if is_s3(str(log)):
        location = S3Location.parse(str(log))
        _create_if_absent(s3_client(), location, _head_name(location, last["seq"]), _encoded(_head_of(last, key)))
    else:
        _write_head_file(head_file(Path(log)), _head_of(last, key))
    return last
