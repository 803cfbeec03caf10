"""The audit trail: a signed hash chain anchored by a head, that names the first edited, removed, reordered,
forged or missing line."""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flowline import audit, storage
from flowline.pipelines.cli import main


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    for number, action in enumerate(("pipeline_run", "package", "gate_decision", "deployment", "promotion"), 1):
        audit.append(path, action, {"use_case": "churn", "n": number}, actor="ci@runner")
    return path


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_records_are_numbered_and_chained(log):
    records = audit.verify(log)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["previous"] == audit.GENESIS
    assert all(b["previous"] == a["hash"] for a, b in zip(records, records[1:]))
    assert all(r["actor"] == "ci@runner" and r["at"].endswith("+00:00") for r in records)


def test_the_actor_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(audit.ACTOR_ENV, "alice@bank")
    assert audit.append(tmp_path / "a.jsonl", "erasure", {})["actor"] == "alice@bank"


def rewrite(log: Path, index: int, rehash: bool) -> None:
    """Change what record `index` (0-based) says; with `rehash`, recompute its hash as a forger would."""
    edited = lines(log)
    record = json.loads(edited[index])
    record["what"]["n"] = 99
    if rehash:
        record["hash"] = audit.record_hash(record)
    edited[index] = json.dumps(record, sort_keys=True)
    log.write_text("\n".join(edited) + "\n")


def test_an_edited_line_is_named(log):
    rewrite(log, 2, rehash=False)  # the gate decision rewritten
    with pytest.raises(audit.AuditError, match="line 3 was edited"):
        audit.verify(log)


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(log):
    rewrite(log, 1, rehash=True)
    with pytest.raises(audit.AuditError, match="line 3 does not follow the line before it"):
        audit.verify(log)


def test_a_removed_line_is_named(log):
    kept = lines(log)
    del kept[1]
    log.write_text("\n".join(kept) + "\n")
    with pytest.raises(audit.AuditError, match="line 2 holds record 3"):
        audit.verify(log)


def test_reordered_lines_are_named(log):
    order = lines(log)
    order[3], order[4] = order[4], order[3]
    log.write_text("\n".join(order) + "\n")
    with pytest.raises(audit.AuditError, match="line 4 holds record 5"):
        audit.verify(log)


def test_a_line_that_is_not_a_record_is_named(log):
    log.write_text(log.read_text() + "not json\n")
    with pytest.raises(audit.AuditError, match="line 6 is not a JSON record"):
        audit.verify(log)


def test_flowline_audit_verify_exits_non_zero_and_names_the_line_last(log, capsys):
    assert main(["audit", "verify", "--log", str(log)]) == 0
    assert "5 records" in capsys.readouterr().out
    tampered = lines(log)
    tampered[0] = tampered[0].replace('"n": 1', '"n": 7')
    log.write_text("\n".join(tampered) + "\n")
    assert main(["audit", "verify", "--log", str(log)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("line 1 was edited: its content does not match its hash")


# ---- the same log in object storage (a real S3 server on loopback: Ceph's RADOS Gateway)

def object_log(bucket: str, records: int = 5) -> str:
    uri = f"s3://{bucket}/audit"
    for number in range(1, records + 1):
        audit.append(uri, "deployment", {"use_case": "churn", "n": number}, actor="pipeline@cluster")
    return uri


@pytest.mark.xdist_group("s3")
def test_the_log_in_object_storage_is_one_object_per_record_and_per_head_chained_like_the_file(s3_bucket):
    uri = object_log(s3_bucket)
    records = audit.verify(uri)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert all(b["previous"] == a["hash"] for a, b in zip(records, records[1:]))
    names = sorted(o.object_name for o in storage.s3_client().list_objects(s3_bucket, prefix="audit/", recursive=True))
    assert names == [f"audit/{n:012d}.json" for n in range(1, 6)] + [f"audit/heads/{n:012d}.json" for n in range(1, 6)]
    client, location = storage.s3_client(), storage.S3Location.parse(uri)
    assert json.loads(audit._read_object(client, location, "audit/heads/000000000005.json")) == {
        "seq": 5, "hash": records[-1]["hash"]}


@pytest.mark.xdist_group("s3")
def test_a_record_in_object_storage_cannot_be_overwritten_by_an_append(s3_bucket):
    uri = object_log(s3_bucket, records=2)
    client = storage.s3_client()
    location = storage.S3Location.parse(uri)
    before = audit._read_object(client, location, "audit/000000000002.json")
    assert audit._create_if_absent(client, location, "audit/000000000002.json", "{}") is False
    assert audit._read_object(client, location, "audit/000000000002.json") == before


@pytest.mark.xdist_group("s3")
def test_concurrent_writers_to_object_storage_never_fork_the_chain(s3_bucket):
    uri = f"s3://{s3_bucket}/audit"

    def write(writer: int) -> None:
        for number in range(8):
            audit.append(uri, "pipeline_run", {"writer": writer, "n": number})

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(write, range(3)))
    records = audit.verify(uri)
    assert len(records) == 24
    assert sorted((r["what"]["writer"], r["what"]["n"]) for r in records) == [(w, n) for w in range(3) for n in range(8)]


@pytest.mark.xdist_group("s3")
@pytest.mark.parametrize("tamper, message", [
    ("edit", "audit/000000000003.json was edited"),
    ("remove", "audit/000000000004.json holds record 4: a record was removed or moved before it"),
    ("swap", "audit/000000000002.json holds record 3"),
])
def test_tampering_in_object_storage_is_named_by_the_cli(s3_bucket, tamper, message, capsys):
    uri = object_log(s3_bucket)
    client = storage.s3_client()

    def put(key: str, text: str) -> None:
        client.put_object(s3_bucket, key, io.BytesIO(text.encode()), len(text.encode()))

    def get(key: str) -> str:
        return audit._read_object(client, storage.S3Location.parse(uri), key)

    if tamper == "edit":
        record = json.loads(get("audit/000000000003.json"))
        record["what"]["use_case"] = "fraud"
        put("audit/000000000003.json", json.dumps(record))
    elif tamper == "remove":
        client.remove_object(s3_bucket, "audit/000000000003.json")
    else:
        second, third = get("audit/000000000002.json"), get("audit/000000000003.json")
        put("audit/000000000002.json", third)
        put("audit/000000000003.json", second)
    assert main(["audit", "verify", "--log", uri]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in last and s3_bucket in last


@pytest.mark.xdist_group("s3")
def test_wrong_credentials_and_missing_configuration_are_clear_errors(s3_bucket, monkeypatch):
    monkeypatch.setenv(storage.SECRET_KEY_ENV, "not-the-secret")
    with pytest.raises(storage.StorageError, match="SignatureDoesNotMatch"):
        audit.append(f"s3://{s3_bucket}/audit", "deployment", {})
    monkeypatch.delenv(storage.ENDPOINT_ENV)
    with pytest.raises(storage.StorageError, match="object storage is not configured: set FLOWLINE_S3_ENDPOINT"):
        audit.verify(f"s3://{s3_bucket}/audit")
