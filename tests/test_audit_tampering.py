"""Tampering with the audit trail as a forger would, in a file and in object storage (a real S3 server).

The forger can write the log and its head but does not hold $FLOWLINE_AUDIT_KEY: after each edit
they recompute every hash and link, renumber, and move the head, so that only the signatures and
the head's own signature can give them away.
"""

import io
import os
import subprocess
import sys
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from minio.error import S3Error
from minio.objectlockconfig import COMPLIANCE, DAYS, ObjectLockConfig
from minio.versioningconfig import ENABLED, VersioningConfig

from flowline import audit, storage
from flowline.pipelines.cli import main

KEY = "writer-key-from-a-secret"


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.xdist_group("s3"))])
def log(request, tmp_path) -> str:
    """Where the log lives: a file, or a prefix in a fresh bucket of the real S3 server."""
    if request.param == "file":
        return str(tmp_path / "audit.jsonl")
    return f"s3://{request.getfixturevalue('s3_bucket')}/audit"


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv(audit.KEY_ENV, KEY)
    return KEY


def write(log: str, records: int = 5) -> None:
    for number in range(1, records + 1):
        audit.append(log, "gate_decision", {"use_case": "churn", "n": number}, actor="ci@runner")


def line(log: str, seq: int) -> str:
    """How verify names record `seq` of the log."""
    return f"line {seq}" if not storage.is_s3(log) else f"audit/{seq:012d}.json"


def head_name(log: str, seq: int) -> str:
    return f"{log}.head" if not storage.is_s3(log) else f"audit/heads/{seq:012d}.json"


# ---- the forger's tools: read and rewrite everything, records and head

def read_all(log: str) -> tuple[list[dict], dict]:
    if not storage.is_s3(log):
        lines = open(log).read().splitlines()
        return [json.loads(text) for text in lines], json.loads(open(f"{log}.head").read())
    client, location = storage.s3_client(), storage.S3Location.parse(log)
    records, heads = audit._object_keys(client, location)
    return ([json.loads(audit._read_object(client, location, name)) for name in records],
            json.loads(audit._read_object(client, location, heads[-1])))


def write_all(log: str, records: list[dict], head: dict) -> None:
    """Replace the log with `records` and its head with `head`, as someone with write access can."""
    if not storage.is_s3(log):
        with open(log, "w") as file:
            file.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)
        with open(f"{log}.head", "w") as file:
            file.write(json.dumps(head))
        return
    client, location = storage.s3_client(), storage.S3Location.parse(log)
    names, heads = audit._object_keys(client, location)
    for name in names[len(records):] + [h for h in heads if int(h[-17:-5]) > head["seq"]]:
        client.remove_object(location.bucket, name)
    for name, item in [(audit._object_name(location, r["seq"]), r) for r in records] + \
            [(audit._head_name(location, head["seq"]), head)]:
        body = json.dumps(item, sort_keys=True).encode()
        client.put_object(location.bucket, name, io.BytesIO(body), len(body))


def rechain(records: list[dict]) -> list[dict]:
    """Renumber from 1 and recompute every link and hash; signatures are left as they were."""
    previous = audit.GENESIS
    for seq, record in enumerate(records, 1):
        record.update(seq=seq, previous=previous)
        record["hash"] = previous = audit.record_hash(record)
    return records


def head_for(records: list[dict], old_head: dict) -> dict:
    """A head naming the new last record, keeping whatever signature the old head had."""
    return {**old_head, "seq": records[-1]["seq"], "hash": records[-1]["hash"]}


def assert_caught(log: str, message: str) -> None:
    with pytest.raises(audit.AuditError) as caught:
        audit.verify(log)
    assert message in str(caught.value)


# ---- empty, missing

def test_an_empty_or_missing_log_is_an_error(tmp_path, capsys):
    missing = tmp_path / "audit.jsonl"
    assert main(["audit", "verify", "--log", str(missing)]) == 1
    shown = capsys.readouterr()
    assert shown.err.strip().endswith("no audit log here (give the log with --log)") and "TAMPERED" not in shown.err
    assert shown.out == ""  # errors go to stderr, as every command's
    missing.write_text("")
    assert main(["audit", "verify", "--log", str(missing)]) == 1
    assert capsys.readouterr().err.strip().endswith("is empty: an audit log holds at least one record")


@pytest.mark.xdist_group("s3")
def test_an_empty_prefix_in_object_storage_is_an_error(s3_bucket):
    with pytest.raises(audit.AuditError, match="no audit log here"):
        audit.verify(f"s3://{s3_bucket}/audit")


def test_removing_a_log_whose_head_remains_is_caught(tmp_path, capsys):
    log = tmp_path / "audit.jsonl"
    write(str(log))
    log.unlink()
    assert main(["audit", "verify", "--log", str(log)]) == 1
    assert "audit log TAMPERED: " in capsys.readouterr().err
    with pytest.raises(audit.AuditError, match="is gone, but its head .* remains: the log was removed"):
        audit.verify(log)


def test_emptying_a_log_whose_head_remains_is_caught(log):
    write(log)
    _, head = read_all(log)
    write_all(log, [], head)
    assert_caught(log, "names record 5, but the log holds none: its records were removed")


# ---- signatures

def test_signed_records_and_head_verify_with_the_key_and_the_cli_says_so(log, key, capsys):
    write(log)
    records, head = read_all(log)
    assert all(len(r["signature"]) == 64 for r in records) and len(head["signature"]) == 64
    assert head["signature"] != records[-1]["signature"]  # a record's signature cannot stand in for a head's
    assert len(audit.verify(log)) == 5
    assert main(["audit", "verify", "--log", log]) == 0
    assert capsys.readouterr().out.strip().endswith(f"5 records, last hash {records[-1]['hash'][:16]}, "
                                                    f"signed ({audit.KEY_ENV})")
    assert main(["audit", "verify", "--log", log, "--require-signed"]) == 0


def test_without_a_key_append_and_verify_warn_that_the_log_only_shows_accidents(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    log = str(tmp_path / "audit.jsonl")
    with pytest.warns(audit.UnsignedAuditWarning, match="only shows accidental edits"):
        audit.append(log, "erasure", {})
    with pytest.warns(audit.UnsignedAuditWarning):
        assert main(["audit", "verify", "--log", log]) == 0
    assert capsys.readouterr().out.strip().endswith("UNSIGNED: tamper-evident against accidents only")
    assert "signature" not in read_all(log)[0][0]
    assert main(["audit", "verify", "--log", log, "--require-signed"]) == 1  # a check that must not pass unsigned
    assert "--require-signed needs $FLOWLINE_AUDIT_KEY" in capsys.readouterr().err


def test_an_edit_with_recomputed_hashes_fails_its_signature(log, key):
    write(log)
    records, head = read_all(log)
    records[1]["what"]["n"] = 99
    rechain(records)
    write_all(log, records, head_for(records, head))
    assert_caught(log, f"{line(log, 2)}: its signature does not match $FLOWLINE_AUDIT_KEY: it was forged")


def test_a_forged_value_shown_ahead_of_the_signed_one_under_the_same_key_is_refused(tmp_path, key):
    """JSON keeps the last of a key written twice: a line could show a forged `what` to a person reading the log
    while the hash and signature checked the genuine one written after it."""
    log = tmp_path / "audit.jsonl"
    write(str(log))
    lines = log.read_text().splitlines()
    lines[1] = '{"what": {"use_case": "forged", "n": 99}, ' + lines[1][1:]
    log.write_text("\n".join(lines) + "\n")
    assert_caught(str(log), "line 2 is not an audit record: key 'what' appears more than once in an object")


def test_without_the_key_an_edit_with_recomputed_hashes_goes_unseen_as_the_warning_says(log, monkeypatch):
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    write(log)
    records, head = read_all(log)
    records[1]["what"]["n"] = 99
    rechain(records)
    write_all(log, records, head_for(records, head))
    with pytest.warns(audit.UnsignedAuditWarning):
        assert audit.verify(log)[1]["what"]["n"] == 99


def test_a_deletion_with_renumbering_and_recomputed_hashes_fails_a_signature(log, key):
    write(log)
    records, head = read_all(log)
    del records[2]
    rechain(records)
    write_all(log, records, head_for(records, head))
    assert_caught(log, f"{line(log, 3)}: its signature does not match")


def test_stripping_the_signatures_is_caught(log, key):
    write(log)
    records, head = read_all(log)
    for record in records:
        del record["signature"]
    write_all(log, records, head)
    assert_caught(log, f"{line(log, 1)} is not signed, but $FLOWLINE_AUDIT_KEY is set")


def test_a_wrong_key_fails_the_first_record(log, key, monkeypatch):
    write(log)
    monkeypatch.setenv(audit.KEY_ENV, "another-key")
    assert_caught(log, f"{line(log, 1)}: its signature does not match $FLOWLINE_AUDIT_KEY")


def test_a_signed_log_cannot_be_checked_or_extended_without_the_key(log, key, monkeypatch):
    write(log, records=2)
    monkeypatch.delenv(audit.KEY_ENV)
    assert_caught(log, f"{line(log, 1)} is signed: set $FLOWLINE_AUDIT_KEY")
    with pytest.raises(audit.AuditError, match=f"{line(log, 2)} is signed: set"):
        audit.append(log, "deployment", {})


def test_an_unsigned_log_cannot_be_extended_with_the_key(log, key, monkeypatch):
    monkeypatch.delenv(audit.KEY_ENV)
    write(log, records=2)
    monkeypatch.setenv(audit.KEY_ENV, KEY)
    with pytest.raises(audit.AuditError, match=f"{line(log, 2)} is not signed"):
        audit.append(log, "deployment", {})


# ---- the head: appended forgeries and truncation

def test_a_forged_record_appended_at_the_end_is_caught_by_the_head(log, monkeypatch):
    """Without the key as well: the forger did not move the head."""
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    write(log)
    records, head = read_all(log)
    forged = {**records[-1], "action": "promotion", "what": {"use_case": "churn", "version": "forged"}}
    records = rechain(records + [forged])
    write_all(log, records, head)
    assert_caught(log, f"{head_name(log, 5)} names record 5 ({head['hash'][:16]}) as the last, but the log ends "
                       f"at record 6 ({records[-1]['hash'][:16]}): records were cut off its end, or written after it")


def test_a_forged_record_appended_with_a_moved_head_fails_its_signature(log, key):
    write(log)
    records, head = read_all(log)
    forged = {**records[-1], "action": "promotion", "what": {"use_case": "churn", "version": "forged"}}
    records = rechain(records + [forged])
    write_all(log, records, head_for(records, head))
    assert_caught(log, f"{line(log, 6)}: its signature does not match")


def test_truncation_is_caught_by_the_head(log, monkeypatch):
    """Without the key as well: cutting records off the end leaves the head naming one that is gone."""
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    write(log)
    records, head = read_all(log)
    write_all(log, records[:3], head)
    assert_caught(log, f"names record 5 ({head['hash'][:16]}) as the last, but the log ends at record 3")


def test_truncation_with_the_head_moved_back_fails_the_heads_signature(log, key):
    """The forger gives the head record 3's number, hash and even its signature: a head is signed apart."""
    write(log)
    records, _ = read_all(log)
    kept = records[:3]
    write_all(log, kept, {"seq": 3, "hash": kept[-1]["hash"], "signature": kept[-1]["signature"]})
    assert_caught(log, f"{head_name(log, 3)}: its signature does not match")


def test_a_removed_head_is_caught(tmp_path):
    log = tmp_path / "audit.jsonl"
    write(str(log))
    audit.head_file(log).unlink()
    assert_caught(str(log), f"{log}.head is missing, but the log holds records")


def test_append_refuses_a_truncated_log_and_leaves_the_evidence(log, monkeypatch):
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    write(log)
    records, head = read_all(log)
    write_all(log, records[:3], head)
    with pytest.raises(audit.AuditError, match="names record 5"):
        audit.append(log, "deployment", {})
    assert read_all(log) == (records[:3], head)


def test_a_writer_that_stopped_before_its_head_is_reported_then_repaired_by_the_next_append(log, key):
    write(log)
    records, _ = read_all(log)
    if storage.is_s3(log):  # the head object of record 5 was never written
        client, location = storage.s3_client(), storage.S3Location.parse(log)
        client.remove_object(location.bucket, audit._head_name(location, 5))
    else:  # the head file still names record 4
        audit._write_head_file(audit.head_file(Path(log)), audit._head_of(records[3], KEY.encode()))
    assert_caught(log, "names record 4")
    audit.append(log, "deployment", {"n": 6})
    assert [r["seq"] for r in audit.verify(log)] == [1, 2, 3, 4, 5, 6]


# ---- object storage: versioning and object lock on the real server

@pytest.mark.xdist_group("s3")
@pytest.mark.parametrize("tamper, message", [
    ("delete", "audit/000000000005.json was deleted: the bucket keeps its versions"),
    ("overwrite", "audit/000000000002.json was overwritten: the bucket keeps 2 versions of it"),
])
def test_in_a_versioned_bucket_deleting_records_and_heads_or_overwriting_leaves_versions(s3_bucket, tamper, message):
    client = storage.s3_client()
    client.set_bucket_versioning(s3_bucket, VersioningConfig(ENABLED))
    log = f"s3://{s3_bucket}/audit"
    write(log)
    if tamper == "delete":  # truncation that removes the heads too
        for name in ("audit/000000000005.json", "audit/heads/000000000005.json"):
            client.remove_object(s3_bucket, name)
    else:
        body = b'{"forged": true}'
        client.put_object(s3_bucket, "audit/000000000002.json", io.BytesIO(body), len(body))
    assert_caught(log, f"{s3_bucket}/{message}")


@pytest.mark.xdist_group("s3")
def test_with_object_lock_no_record_or_head_can_be_deleted(s3_bucket, key):
    """A bucket made with object lock and a default retention: the server refuses to delete any version."""
    client, bucket = storage.s3_client(), f"{s3_bucket}-locked"
    client.make_bucket(bucket, object_lock=True)
    client.set_object_lock_config(bucket, ObjectLockConfig(COMPLIANCE, 1, DAYS))
    log = f"s3://{bucket}/audit"
    write(log, records=3)
    assert len(audit.verify(log)) == 3
    for name in ("audit/000000000003.json", "audit/heads/000000000003.json"):
        (version,) = client.list_objects(bucket, prefix=name, include_version=True)
        # minio-py cannot parse the gateway's nanosecond dates in get_object_retention: read the headers
        locked = client.stat_object(bucket, name, version_id=version.version_id).metadata
        assert locked["x-amz-object-lock-mode"] == COMPLIANCE
        until = datetime.fromisoformat(locked["x-amz-object-lock-retain-until-date"][:19]).replace(tzinfo=timezone.utc)
        assert until > datetime.now(timezone.utc) + timedelta(hours=23)
        with pytest.raises(S3Error) as refused:
            client.remove_object(bucket, name, version_id=version.version_id)
        assert refused.value.code == "AccessDenied"
    assert len(audit.verify(log)) == 3


# ---- logs written before heads existed

def remove_heads(log: str) -> None:
    if not storage.is_s3(log):
        Path(f"{log}.head").unlink()
        return
    client, location = storage.s3_client(), storage.S3Location.parse(log)
    for name in audit._object_keys(client, location)[1]:
        client.remove_object(location.bucket, name)


def test_a_log_written_before_heads_is_anchored_after_its_chain_is_checked(log, key, capsys):
    write(log)
    remove_heads(log)
    with pytest.raises(audit.AuditError, match="flowline audit anchor"):
        audit.append(log, "deployment", {})
    assert main(["audit", "anchor", "--log", log]) == 0
    assert "5 records checked, head at record 5" in capsys.readouterr().out
    assert len(audit.verify(log)) == 5
    audit.append(log, "deployment", {})  # writable again
    assert main(["audit", "anchor", "--log", log]) == 1
    assert "anchored already" in capsys.readouterr().err


def test_anchoring_refuses_an_edited_chain(log, key):
    write(log)
    records, head = read_all(log)
    records[1]["what"]["n"] = 99
    write_all(log, rechain(records), head)
    remove_heads(log)
    with pytest.raises(audit.AuditError, match="signature does not match"):
        audit.anchor(log)


def test_a_signature_that_is_not_ascii_is_refused_not_a_crash(tmp_path, key):
    log = str(tmp_path / "audit.jsonl")
    write(log, 2)
    records, head = read_all(log)
    records[1]["signature"] = "é" * 64
    write_all(log, records, head)
    assert_caught(log, "signature does not match")


def test_a_failed_write_leaves_the_log_as_it_was_and_a_torn_last_line_is_dropped(tmp_path, key, monkeypatch):
    """A full disk failed a write part-way, or a crash cut one short: the log must not read as tampered after."""
    log = tmp_path / "audit.jsonl"
    for n in range(3):
        audit.append(log, "deployment", {"n": n})
    before = (log.read_bytes(), audit.head_file(log).read_bytes())

    def full_disk(path, head):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(audit, "_write_head_file", full_disk)  # the record was written, its head could not be
    with pytest.raises(OSError, match="No space left"):
        audit.append(log, "deployment", {"n": 3})
    monkeypatch.undo()
    monkeypatch.setenv(audit.KEY_ENV, KEY)
    assert (log.read_bytes(), audit.head_file(log).read_bytes()) == before

    with open(log, "ab") as file:  # a crash in the middle of a record's line
        file.write(b'{"seq": 4, "at": "2026-')
    with pytest.warns(audit.AuditRepairWarning, match="dropped an incomplete last line"):
        record = audit.append(log, "deployment", {"n": 4})
    assert record["seq"] == 4 and [r["seq"] for r in audit.verify(log)] == [1, 2, 3, 4]
    assert audit.head_file(log).stat().st_mode & 0o777 == log.stat().st_mode & 0o777  # others may verify it too


def test_a_cut_line_that_its_head_names_is_kept_and_refused_not_dropped_as_an_unfinished_write(tmp_path, key):
    """A record written and acknowledged (its head names it), then cut in half: a reader (`flowline runs`) took it
    for a write cut short and deleted what was left of it."""
    from flowline import registry

    log = tmp_path / audit.AUDIT_FILE
    for n in range(3):
        audit.append(log, "deployment", {"n": n})
    data = log.read_bytes()
    damaged = data[:data.rfind(b"\n", 0, len(data) - 1) + 1 + 40]  # the third record's first 40 bytes
    log.write_bytes(damaged)
    with pytest.raises(audit.AuditError, match="audit.jsonl: line 3 is not a JSON record"):  # verify's finding
        registry.read(tmp_path)
    assert log.read_bytes() == damaged
    with pytest.raises(audit.AuditError, match="line 3 is cut short, but audit.jsonl.head names record 3"):
        audit.append(log, "deployment", {"n": 3})
    assert log.read_bytes() == damaged


def test_a_reader_leaves_a_cut_last_line_in_place_for_verify_to_report(tmp_path, key):
    """`flowline models` dropped 77 bytes appended by hand (an unfinished line no head names) as a write cut short,
    and `audit verify` then said intact: only a writer may drop it, and a reader reads around it."""
    from flowline import registry

    log = tmp_path / audit.AUDIT_FILE
    for n in range(3):
        audit.append(log, "deployment", {"n": n})
    with open(log, "ab") as file:
        file.write(b'{"seq": 4, "action": "rollback", "what": {"package_version": "3211b701cf31"}')
    edited = log.read_bytes()
    with pytest.warns(audit.AuditRepairWarning, match="line 4 is cut short"):
        assert [r["seq"] for r in audit.read(log)] == [1, 2, 3]
    with pytest.warns(audit.AuditRepairWarning, match="line 4 is cut short"):
        registry.read(tmp_path)
    assert log.read_bytes() == edited
    assert_caught(str(log), "line 4 is not a JSON record")


def test_a_deleted_log_whose_head_remains_is_refused_by_the_registry_not_read_as_empty(tmp_path, key):
    """`flowline models` and `runs` showed an empty registry, exit 0, while `audit verify` said TAMPERED."""
    from flowline import registry

    log = tmp_path / audit.AUDIT_FILE
    audit.append(log, "deployment", {"n": 0})
    log.unlink()
    with pytest.raises(audit.AuditError, match="audit.jsonl is gone, but its head"):
        registry.read(tmp_path)
    assert registry.read(tmp_path / "elsewhere").packages == []  # no log and no head: no runs yet


def test_a_reader_of_the_registry_writes_the_head_a_writer_stopped_before(tmp_path, key):
    """`flowline run`, `runs`, `models` and `serve USE_CASE` read the registry before they append: they complete
    the head as that append would, instead of refusing the log for good."""
    from flowline import registry

    log = tmp_path / audit.AUDIT_FILE
    for n in range(3):
        audit.append(log, "deployment", {"n": n})
    records, _ = read_all(str(log))
    audit._write_head_file(audit.head_file(log), audit._head_of(records[1], KEY.encode()))  # stopped before 3's
    assert_caught(str(log), "names record 2")
    with pytest.warns(audit.AuditRepairWarning, match="wrote the head of record 3"):
        registry.read(tmp_path)
    assert [r["seq"] for r in audit.verify(log)] == [1, 2, 3]
    forged = {**records[-1], "seq": 4, "previous": records[-1]["hash"], "what": {"n": "forged"}}
    with open(log, "a") as file:  # a record that does not carry a valid signature is not given a head
        file.write(json.dumps({**forged, "hash": audit.record_hash(forged)}) + "\n")
    assert audit.repair_head(log) is False
    assert_caught(str(log), "line 4: its signature does not match")


def test_an_unsigned_log_is_warned_of_once_per_process_not_once_per_caller(tmp_path):
    """A run appends three records from three places, and a notebook runs many: one warning, not one per line."""
    script = ("import tempfile\nfrom flowline import audit\nfolder = tempfile.mkdtemp()\n"
              "for n in range(3):\n    audit.append(f'{folder}/audit.jsonl', 'deployment', {'n': n})\n"
              "audit.verify(f'{folder}/audit.jsonl')\n")
    environment = {name: value for name, value in os.environ.items() if name != audit.KEY_ENV}
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True)
    assert shown.stderr.count(f"${audit.KEY_ENV} is not set") == 1, shown.stderr
