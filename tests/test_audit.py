"""The audit trail: a hash chain that names the first edited, removed or reordered line."""

import json
from pathlib import Path

import pytest

from flowline import audit
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
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("line 1 was edited: its content does not match its hash")
