"""Erasure: a subject's rows leave every stored dataset of the use case, and only those rows."""

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from flowline import audit
from flowline.audit import verify
from flowline.erasure import ErasureError, erase_subject, subject_hash
from flowline.pipelines.cli import EXIT_GATE_FAILED, main


def customers(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"customerID": ids, "tenure": range(len(ids)), "Churn": ["No"] * len(ids)})


def fake_run(runs: Path, name: str, train: list[str], test: list[str], quarantined: list[str]) -> Path:
    """A run folder laid out as kfp.local leaves it: task folders of Parquet outputs, and a package."""
    tasks = runs / name / "flowline-churn-x"
    for task, output, frame in (
        ("ingest", "dataset", customers(train + test)),
        ("ingest", "quarantine", customers(quarantined).astype("string")),
        ("split", "train", customers(train)),
        ("split", "test", customers(test)),
        # train's out-of-fold scores, with each row's id and sensitive attributes
        ("train", "holdout", pd.DataFrame({"label": [0.0] * len(train), "prediction": [0.2] * len(train),
                                           "customerID": train, "gender": ["Female"] * len(train)})),
        ("evaluate", "roc", pd.DataFrame({"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]})),  # no key column
    ):
        (tasks / task).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(tasks / task / output)
    package = tasks / "package" / "model_package"
    package.mkdir(parents=True)
    (package / "manifest.json").write_text(json.dumps({"name": "churn"}))
    return tasks


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    fake_run(folder, "churn-1", train=["A-1", "B-2", "C-3"], test=["D-4"], quarantined=[" B-2 ", "E-5"])
    fake_run(folder, "churn-2", train=["C-3"], test=["B-2", "F-6"], quarantined=[])
    fake_run(folder, "fraud-1", train=["B-2"], test=[], quarantined=[])  # another use case: untouched
    return folder


def test_every_row_of_the_subject_goes_and_every_other_row_stays(runs, churn):
    before = {p: pd.read_parquet(p) for p in runs.rglob("*") if p.is_file() and p.name != "manifest.json"}
    report = erase_subject(churn, "B-2", runs, runs / "audit.jsonl")
    for path, frame in before.items():
        after = pd.read_parquet(path)
        if "customerID" in frame.columns and path.parts[-4] != "fraud-1":
            subject = frame["customerID"].astype(str).str.strip() == "B-2"
            pd.testing.assert_frame_equal(after, frame[~subject])
        else:
            pd.testing.assert_frame_equal(after, frame)
    # churn-1: dataset, quarantine (padded " B-2 "), train, holdout; churn-2: dataset, test.
    assert report.total_rows == 6 and len(report.rows_removed) == 6


def test_the_packages_trained_on_the_subject_are_named(runs, churn):
    report = erase_subject(churn, "B-2", runs, runs / "audit.jsonl")
    # churn-2 only had B-2 in test: its model never learned from the subject.
    assert report.packages_trained_on_subject == [str(runs / "churn-1" / "flowline-churn-x" / "package" / "model_package")]


def test_the_audit_log_keeps_the_fact_and_the_ids_hash_never_the_id(runs, churn):
    log = runs / "audit.jsonl"
    erase_subject(churn, "B-2", runs, log)
    (record,) = verify(log)
    assert record["action"] == "erasure"
    assert record["what"]["subject"] == "sha256:" + hashlib.sha256(b"B-2").hexdigest()
    assert record["what"]["rows_removed"] == 6
    assert "B-2" not in log.read_text()


def test_with_the_audit_key_the_subject_is_named_by_a_keyed_hash_no_list_of_ids_can_match(runs, churn, monkeypatch):
    """A plain sha256 of the id gave every erased customer back to anyone hashing the source's ids."""
    monkeypatch.setenv(audit.KEY_ENV, "an audit key")
    log = runs / "audit.jsonl"
    erase_subject(churn, "B-2", runs, log)
    subject = verify(log)[-1]["what"]["subject"]
    assert subject.startswith("hmac-sha256:") and hashlib.sha256(b"B-2").hexdigest() not in log.read_text()
    assert subject == subject_hash("B-2", b"an audit key") != subject_hash("B-2", b"another key")


def test_erasing_again_names_what_the_first_erasure_found_still_standing(runs, churn, capsys):
    """A second erasure finds no row, and said that no package was trained on the subject and no copy was left."""
    log = runs / "audit.jsonl"
    reference = runs / "churn-1" / "flowline-churn-x" / "drift" / "x_ref.npy"
    reference.parent.mkdir(parents=True)
    reference.write_bytes(b"\x93NUMPY")
    first = erase_subject(churn, "B-2", runs, log)
    assert first.packages_trained_on_subject and str(reference) in first.copies_left and not first.erased_before
    assert main(["erase", "churn", "--id", "B-2", "--runs-dir", str(runs), "--audit-log", str(log)]) == 0
    shown = capsys.readouterr()
    assert "erased before at " in shown.out and "no row or event" not in shown.err
    assert "no package was trained" not in shown.out and str(reference) in shown.out
    again = verify(log)[-1]["what"]
    assert again["rows_removed"] == 0 and again["packages_trained_on_subject"] == first.packages_trained_on_subject
    assert again["copies_left"] == first.copies_left
    reference.unlink()  # a copy deleted since is no longer listed
    assert str(reference) not in erase_subject(churn, "B-2", runs, log).copies_left


def test_a_broken_audit_log_stops_the_erasure_before_any_row_goes(runs, churn):
    """The rows went from every file, then the append failed: nothing recorded, nothing reported."""
    log = runs / "audit.jsonl"
    audit.append(log, "deployment", {"n": 1})
    log.write_text(log.read_text().replace('"n": 1', '"n": 2'))
    before = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file() and p.parent.name == "split"}
    with pytest.raises(audit.AuditError, match="line 1 was edited"):
        erase_subject(churn, "B-2", runs, log)
    assert {p: p.read_bytes() for p in before} == before


@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_id_is_refused(runs, churn, blank):
    with pytest.raises(ErasureError, match="an empty id"):
        erase_subject(churn, blank, runs, runs / "audit.jsonl")
    assert not (runs / "audit.jsonl").exists()


def test_the_command_reports_what_it_erased_in_the_runs_folders_audit_log(runs, capsys, tmp_path: Path,
                                                                         monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not where the runs are: the record goes to theirs, not ./runs
    code = main(["erase", "--use-case", "churn", "--id", "C-3", "--runs-dir", str(runs)])
    shown = capsys.readouterr().out
    assert code == 0 and "erased 6 row(s) of subject sha256" in shown  # two datasets, two train splits, two holdouts
    assert "packages trained on this subject" in shown and "churn-2" in shown
    assert f"recorded in {runs / 'audit.jsonl'}" in shown
    # The use case's own data is not edited, and its next run reads the subject again: said, with where it is.
    assert "not edited: remove the subject there too: " in shown and "telco_customer_churn" in shown
    assert [record["action"] for record in verify(runs / "audit.jsonl")] == ["erasure"]
    assert not (elsewhere / "runs").exists()


def test_a_malformed_line_of_the_subject_goes_from_the_quarantine_wherever_its_id_sits(tmp_path: Path, churn):
    """Ingest's own quarantine of a file whose lines are all malformed: a stray field before the id, or too few."""
    from flowline.components.ingest.ingestion import ingest_to_files

    source = tmp_path / "customers.csv"
    columns = [*churn.columns, churn.label.column]  # customerID first
    rows = [["x", "B-2", *["1"] * (len(columns) - 1)],     # a stray field before the id: B-2 sits under the wrong name
            ["x", "C-3", *["1"] * (len(columns) - 1)],
            ["B-2", "1", "No"],                             # too few fields
            ["D-4", *["1"] * (len(columns) - 1), "B-2", "y"]]  # two fields too many: B-2 among the surplus ones
    source.write_text(",".join(columns) + "\n" + "\n".join(",".join(row) for row in rows) + "\n")
    runs = tmp_path / "runs"
    task = runs / "churn-1" / "flowline-churn-x" / "ingest"
    task.mkdir(parents=True)
    outputs = [str(task / name) for name in ("dataset", "quarantine", "profile")]
    with pytest.raises(ValueError, match="4 of 4 rows"):
        ingest_to_files(churn, str(source), *outputs)
    clean = runs / "churn-2" / "flowline-churn-x" / "ingest"  # a clean run's quarantine: no row at all
    clean.mkdir(parents=True)
    pd.read_parquet(outputs[1]).iloc[:0].to_parquet(clean / "quarantine")
    report = erase_subject(churn, "B-2", runs, runs / "audit.jsonl")
    assert report.total_rows == 3
    left = pd.read_parquet(outputs[1])
    assert left["_source_row"].tolist() == [1] and left["customerID"].tolist() == ["x"]  # C-3's line stays


def test_a_use_case_without_a_key_is_refused(toy_use_case, tmp_path):
    keyless = toy_use_case.model_copy(update={"id_columns": []})
    with pytest.raises(ErasureError, match="declares no id_columns"):
        erase_subject(keyless, "x", tmp_path, tmp_path / "audit.jsonl")


def test_a_rewrite_cut_short_leaves_the_file_whole_and_a_broken_file_is_named(tmp_path: Path, churn, monkeypatch):
    """A kill or a full disk during the rewrite truncated the file in place: every other subject's rows went, and
    each later erase died on the broken Parquet with a traceback."""
    scores = tmp_path / "scores.parquet"
    pd.DataFrame({"customerID": ["A-1", "B-2", "C-3"], "probability": [0.1, 0.2, 0.3]}).to_parquet(scores)
    scores.chmod(0o640)
    audit.append(tmp_path / "audit.jsonl", "batch_scoring", {"use_case": "churn", "output": str(scores)})
    before = scores.read_bytes()

    def full_disk(frame, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 and no more")
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(pd.DataFrame, "to_parquet", full_disk)
        with pytest.raises(OSError, match="No space left"):
            erase_subject(churn, "B-2", tmp_path / "runs", tmp_path / "audit.jsonl")
    assert scores.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.jsonl", "audit.jsonl.head", "scores.parquet"]
    assert erase_subject(churn, "B-2", tmp_path / "runs", tmp_path / "audit.jsonl").total_rows == 1
    assert pd.read_parquet(scores)["customerID"].tolist() == ["A-1", "C-3"] and scores.stat().st_mode & 0o777 == 0o640
    scores.write_bytes(b"PAR1 cut short")  # broken some other way
    with pytest.raises(ErasureError, match=f"{scores}: cannot be read as Parquet .*restore or remove it"):
        erase_subject(churn, "A-1", tmp_path / "runs", tmp_path / "audit.jsonl")


def files_holding(folder: Path, needles: list[str]) -> list[str]:
    """Files under `folder` whose bytes, or for Parquet (its pages may be compressed) whose cells, hold a needle."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        texts = [data, pd.read_parquet(path).astype(str).to_csv().encode()] if data[:4] == b"PAR1" else [data]
        found += [f"{path.relative_to(folder)}: {needle}" for needle in needles
                  if any(needle.encode() in text for text in texts)]
    return found


@pytest.mark.pipeline
def test_after_erase_no_file_of_the_run_or_its_package_holds_the_id_or_its_hash(data_home, tmp_path: Path, capsys):
    """A real churn run on 800 Telco rows; the subject is the first customer, who trains the model and, with
    an id column profiled like any other, was among the profile's "top values"."""
    lines = Path(data_home, "telco_customer_churn.csv").read_text().splitlines()[:801]
    source = tmp_path / "telco-800.csv"
    source.write_text("\n".join(lines) + "\n")
    subject = lines[1].split(",")[0]
    runs = tmp_path / "runs"
    code = main(["run", "churn", "--source", str(source), "--trials", "1", "--runs-dir", str(runs)])
    assert code in (0, EXIT_GATE_FAILED)  # erasure is the point here, not the gates
    (run_dir,) = runs.glob("churn-*")
    needles = [subject, hashlib.sha256(subject.encode()).hexdigest()]
    assert files_holding(run_dir, needles[:1])  # the run holds the subject before (the test can see it)
    assert subject in set(pd.read_parquet(next(run_dir.glob("*/split/train")))["customerID"])
    capsys.readouterr()

    code = main(["erase", "--use-case", "churn", "--id", subject, "--runs-dir", str(runs),
                 "--audit-log", str(runs / "audit.jsonl")])
    assert code == 0 and "packages trained on this subject" in capsys.readouterr().out
    assert files_holding(run_dir, needles) == []
    profile = next(run_dir.glob("*/ingest/profile")).read_text()
    assert "| customerID | id | 0 | 800 |" in profile  # counted, never listed
    assert verify(runs / "audit.jsonl")[-1]["what"]["subject"] == "sha256:" + needles[1]


def test_a_customer_s_events_leave_the_online_store_and_the_audit_log_counts_them(tmp_path: Path, capsys):
    """CLV's transactions are events of their customer in the online store the server reads: `flowline erase`
    removes them from the runs folder's store, keeps the other customers', and records how many went."""
    from flowline.online_store import open_store
    from flowline.use_case_loader import load_use_case

    clv = load_use_case("clv")
    runs = tmp_path / "runs"
    runs.mkdir()
    store = open_store(f"sqlite://{runs / 'online-store.db'}")
    store.append_many(clv.entity_definition, {"123": [(1.0, {"amount": 5.0}), (9.0, {"amount": 2.5})],
                                              "456": [(3.0, {"amount": 1.0})]})
    store.close()
    log = runs / "audit.jsonl"
    assert main(["erase", "clv", "--id", "123", "--runs-dir", str(runs), "--audit-log", str(log)]) == 0
    assert "erased 2 event(s) from the online store" in capsys.readouterr().out
    store = open_store(f"sqlite://{runs / 'online-store.db'}")
    assert store.events_many(clv.entity_definition, ["123", "456"]) == {"123": [], "456": [(3.0, {"amount": 1.0})]}
    record = verify(log)[-1]
    assert record["action"] == "erasure" and record["what"]["online_events_removed"] == 2


def test_an_integer_id_the_contract_stored_as_a_float_is_erased_and_a_miss_is_warned_of(tmp_path: Path, capsys):
    """The contract reads an integer id as float64 (1001 as 1001.0): the subject is still found, by number."""
    from flowline.use_case_loader import load_use_case

    churn = load_use_case("churn")
    numbered = churn.model_copy(update={"columns": {**churn.columns, "customerID": churn.columns["tenure"]}})
    runs = tmp_path / "runs"
    split = runs / "churn-1" / "flowline-churn-x" / "split"
    split.mkdir(parents=True)
    pd.DataFrame({"customerID": [1001.0, 1002.0], "tenure": [1, 2]}).to_parquet(split / "train")
    report = erase_subject(numbered, " 1001 ", runs, runs / "audit.jsonl")
    assert report.total_rows == 1
    assert pd.read_parquet(split / "train")["customerID"].tolist() == [1002.0]
    assert erase_subject(numbered, "not-a-number", runs, runs / "audit.jsonl").total_rows == 0
    assert main(["erase", "--use-case", "churn", "--id", "nobody", "--runs-dir", str(runs)]) == 0
    assert "warning: no row or event of 'nobody' was found" in capsys.readouterr().err


def test_batch_outputs_anywhere_lose_the_subject_and_drift_references_are_listed_as_copies_left(runs, churn,
                                                                                                tmp_path: Path):
    """Batch scoring writes ids wherever --output says; the audit log records where. A drift reference is raw
    training rows in a NumPy file erasure cannot edit, and a package's fingerprints hash its training rows' ids:
    both are named."""
    from flowline import audit

    log = runs / "audit.jsonl"
    elsewhere = tmp_path / "exports"
    elsewhere.mkdir()
    scores = pd.DataFrame({"customerID": ["B-2", "Z-9"], "probability": [0.4, 0.6]})
    scores.to_parquet(elsewhere / "scores.parquet")
    scores.head(0).to_parquet(elsewhere / "scores.quarantine.parquet")
    audit.append(log, "batch_scoring", {"use_case": "churn", "output": str(elsewhere / "scores.parquet"),
                                        "quarantine": str(elsewhere / "scores.quarantine.parquet")})
    audit.append(log, "batch_scoring", {"use_case": "churn", "output": "s3://exports/scores.parquet",
                                        "quarantine": "s3://exports/scores.quarantine.parquet"})
    # recorded as typed before outputs were made absolute: not found from here, so perhaps left elsewhere
    audit.append(log, "batch_scoring", {"use_case": "churn", "output": "relative/scores.parquet",
                                        "quarantine": "relative/scores.quarantine.parquet"})
    reference = runs / "churn-1" / "flowline-churn-x" / "drift" / "x_ref.npy"
    reference.parent.mkdir(parents=True)
    reference.write_bytes(b"\x93NUMPY")
    fingerprints = runs / "churn-1" / "flowline-churn-x" / "package" / "model_package" / "fitted_rows.npy"
    fingerprints.parent.mkdir(parents=True, exist_ok=True)  # its training rows' ids hashed: the subject's too
    fingerprints.write_bytes(b"\x93NUMPY")
    # churn-2 tested on the subject: its explanations hold test rows' raw values, without ids
    explained = [runs / "churn-2" / "flowline-churn-x" / "explain" / "explanation",
                 runs / "churn-2" / "flowline-churn-x" / "explain" / "report",  # explanation.html's KFP artifact
                 runs / "churn-2" / "reports" / "explanation.html"]
    for path in explained:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    report = erase_subject(churn, "B-2", runs, log)
    assert pd.read_parquet(elsewhere / "scores.parquet")["customerID"].tolist() == ["Z-9"]
    assert report.rows_removed[str(elsewhere / "scores.parquet")] == 1
    assert sorted(report.copies_left) == sorted([str(reference), str(fingerprints), *map(str, explained),
                                                 "s3://exports/scores.parquet",
                                                 "s3://exports/scores.quarantine.parquet", "relative/scores.parquet",
                                                 "relative/scores.quarantine.parquet"])
    assert verify(log)[-1]["what"]["copies_left"] == report.copies_left
