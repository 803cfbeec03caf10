"""flowline score: batch scoring with a package. Every row is scored as the model server (a real one, on
loopback) answers it, or quarantined with its reason; input from a path, s3:// (a real S3 server) and http(s)
(a real http.server); CLV customers as of a date; the batch pipeline through kfp.local; the audit log."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from flowline import storage
from flowline.audit import verify as verify_audit_log
from flowline.batch import AUDIT_ACTION
from flowline.contract import apply_contract
from flowline.customer_rows import CUTOFF_COLUMN
from flowline.datasets import dataset_path
from flowline.inference_services.local_server import LOOPBACK, running_server
from flowline.package.format import Package
from flowline.package.remote import CACHE_ENV, upload_package
from flowline.pipelines.cli import main
from flowline.quarantine import REASON_COLUMN, ROW_COLUMN
from flowline.scoring import Scorer
from flowline.use_case_loader import load_use_case
from serving_helpers import MAX_BATCH, records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

GOOD_ROWS = 150
# Deliberately broken rows, by what breaks them: (column to change, value, the reason's text); None: a malformed line.
BROKEN = [("tenure", "abc", "tenure: 'abc' is not a number"),
          ("Contract", "Weekly", "Contract: 'Weekly' is not one of"),
          ("MonthlyCharges", " ", "MonthlyCharges: blank, but the column is not nullable"),
          # named, as the server names it (it was "a feature computed from this row")
          ("TotalCharges", "1e308", "TotalCharges: a number beyond float32's range, which the model computes in"),
          (None, "extra", "22 fields, but the header has 21"),
          (None, "short", "20 fields, but the header has 21")]


@pytest.fixture(scope="module")
def telco() -> pd.DataFrame:
    """The first Telco rows as the file holds them (every cell text), label included: scoring ignores it."""
    return pd.read_csv(dataset_path("telco_customer_churn"), dtype=str, keep_default_na=False).head(GOOD_ROWS)


def write_rows(frame: pd.DataFrame, path: Path, broken: bool) -> Path:
    """The rows as CSV; with `broken`, one row per BROKEN entry among them and one with tenure 100 (within the
    contract, outside the training profile)."""
    lines = [list(frame.columns), *frame.to_numpy().tolist()]
    if broken:
        columns = list(frame.columns)
        for position, (column, value, _) in enumerate(BROKEN):
            row = list(lines[1 + position * 7])
            if column:
                row[columns.index(column)] = value
            else:
                row = row + ["surplus"] if value == "extra" else row[:-1]
            lines.insert(2 + position * 7, row)
        lines.append([*frame.iloc[0].tolist()[:columns.index("tenure")], "100",
                      *frame.iloc[0].tolist()[columns.index("tenure") + 1:]])
    with open(path, "w", newline="") as out:
        csv.writer(out).writerows(lines)
    return path


@pytest.fixture(scope="module")
def served_churn(churn_package, tmp_path_factory) -> str:
    """A real model server of the churn package on loopback."""
    with running_server([str(churn_package)], extra_args=["--max-batch", str(MAX_BATCH)],
                        log_path=str(tmp_path_factory.mktemp("batch-server") / "server.log")) as url:
        yield url


def served_answers(url: str, records: list[dict]) -> pd.DataFrame:
    answers = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(records), MAX_BATCH):
            response = client.post("/v1/models/churn:predict", json={"instances": records[start:start + MAX_BATCH]})
            assert response.status_code == 200, response.text
            answers += response.json()["predictions"]
    return pd.DataFrame(answers)



def test_in_process_scores_refuse_the_rows_the_server_refuses(churn_package, churn_test_rows):
    """Scorer.predict and decide_frame check the contract: a row the server answers with a 400 gets no score
    in process either, and the error names the row, the column and why."""
    from flowline.contract import ContractError

    scorer = Scorer.open(churn_package)
    good = churn_test_rows.head(3).reset_index(drop=True)
    assert len(scorer.predict(good)) == 3 and len(scorer.decide_frame(good)) == 3
    for records in (good.to_dict("records"), good.iloc[0]):  # a notebook's records, or one row
        with pytest.raises(TypeError, match="frame: expected a pandas DataFrame of raw columns, got (list|Series)"):
            scorer.predict(records)
    # As a notebook cell shows it: what it scores with, not the whole use case, FeatureSet and model.
    assert repr(scorer) == (f"Scorer(churn {scorer.version}, binary: {' + '.join(dict.fromkeys(scorer.model.families))}"
                            f", {'one threshold' if scorer.mitigation is None else 'per-group thresholds'})")
    for column, value, said in [("tenure", None, "tenure: blank"), ("Contract", "Weekly", "Contract: 'Weekly'"),
                                ("tenure", -5, "tenure: .-5. is below the minimum")]:
        bad = good.copy()
        bad[column] = bad[column].astype(object)
        bad.loc[1, column] = value
        for score in (scorer.predict, scorer.decide_frame):
            with pytest.raises(ContractError, match=f"1 of 3 row\\(s\\) break the contract.*row 1: {said}"):
                score(bad)

def test_columns_the_contract_does_not_declare_are_named_not_read(churn_package, telco, tmp_path, capsys):
    """The server refuses a column it does not know; a file's were dropped without a word."""
    source = tmp_path / "with-extra.csv"
    telco.head(20).assign(merchant="m-1").to_csv(source, index=False)  # the label, Churn, is declared: not named
    assert main(["score", str(churn_package), "--input", str(source), "--output", str(tmp_path / "s.parquet"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ignored_columns"] == ["merchant"]
    assert main(["score", str(churn_package), "--input", str(source), "--output", str(tmp_path / "t.parquet")]) == 0
    assert "not read (the contract does not declare them): merchant" in capsys.readouterr().out


def test_every_row_is_scored_as_the_server_answers_or_quarantined_with_its_reason(
        churn_package, served_churn, telco, tmp_path, capsys):
    source = write_rows(telco, tmp_path / "customers.csv", broken=True)
    out, log = tmp_path / "scores.parquet", tmp_path / "audit.jsonl"
    started = datetime.now(timezone.utc)
    assert main(["score", str(churn_package), "--input", str(source), "--output", str(out), "--chunk-rows", "32",
                 "--audit-log", str(log)]) == 0
    printed = capsys.readouterr().out
    scores, quarantine = pd.read_parquet(out), pd.read_parquet(tmp_path / "scores.quarantine.parquet")

    rows_in = GOOD_ROWS + len(BROKEN) + 1
    assert (len(scores), len(quarantine)) == (GOOD_ROWS + 1, len(BROKEN))
    assert f"rows in {rows_in}, rows scored {GOOD_ROWS + 1}, rows quarantined {len(BROKEN)}" in printed
    assert quarantine[ROW_COLUMN].is_monotonic_increasing  # in row order, whatever chunk each came from
    for (_, _, reason), found in zip(BROKEN, quarantine[REASON_COLUMN]):
        assert reason in found, found
    assert quarantine.loc[quarantine[REASON_COLUMN].str.contains("22 fields"), "_extra_fields"].tolist() == ["surplus"]

    # The server's answers for the same rows, sent as an application sends them (typed, ids included).
    package = Scorer.open(churn_package)
    use_case = package.use_case
    with open(source, newline="") as lines:
        header, *rows = list(csv.reader(lines))
    well_formed = pd.DataFrame([row for row in rows if len(row) == len(header)], columns=header)
    kept = apply_contract(well_formed, use_case, to_score=True).kept
    assert "TotalCharges" in package.feature_set.feature_names  # unscaled: 1e308 overflows float32
    kept = kept[np.isfinite(package.feature_set.transform(kept)).all(axis=1)]  # the server refuses the others
    served = served_answers(served_churn, records_of(kept[[*use_case.id_columns, *use_case.feature_columns]]))
    assert scores["customerID"].tolist() == served["customerID"].tolist()
    assert np.array_equal(scores["probability"].to_numpy(), served["probability"].to_numpy(np.float32))
    assert np.array_equal(scores["threshold"].to_numpy(), served["threshold"].to_numpy(np.float32))
    assert scores["decision"].tolist() == served["decision"].tolist()
    assert {"Yes", "No"} == set(scores["decision"])
    assert set(scores["package_version"]) == {package.version}
    assert scores["scored_at"].between(pd.Timestamp(started).floor("s"), pd.Timestamp.now(tz="UTC")).all()
    assert sorted(set(scores[ROW_COLUMN]) | set(quarantine[ROW_COLUMN])) == list(range(rows_in))  # each row once
    umask = os.umask(0)
    os.umask(umask)
    assert {(tmp_path / name).stat().st_mode & 0o777 for name in ("scores.parquet", "scores.quarantine.parquet")} == {
        0o666 & ~umask}  # readable as any file written here, not private to its writer

    # tenure 100 meets the contract (max 120) but lies outside the training profile: scored, and counted.
    record = verify_audit_log(log)[-1]
    assert record["action"] == AUDIT_ACTION
    what = record["what"]
    # and the alerts it gives: the rows decided positive (a review team sizes its day on them)
    flagged = int((scores["decision"] == "Yes").sum())
    assert what["counts"] == {"rows_in": rows_in, "rows_scored": GOOD_ROWS + 1, "rows_quarantined": len(BROKEN),
                              "rows_flagged": flagged} and 0 < flagged < GOOD_ROWS
    assert f"rows flagged {flagged:,} ({flagged / (GOOD_ROWS + 1):.1%}) (" in printed
    assert what["ignored_columns"] == [] and "not read" not in printed
    assert (what["package_version"], what["input"], what["output"]) == (package.version, str(source), str(out))
    (tenure,) = [i for i in package.feature_set.numeric if i.column == "tenure"]  # the training split's range
    scored_tenure = kept["tenure"].to_numpy(np.float64)
    outside = int(((scored_tenure < tenure.low) | (scored_tenure > tenure.high)).sum())
    assert what["out_of_profile"]["tenure"] == outside >= 1 and 100 > tenure.high
    assert f"tenure {outside}" in printed


def test_a_blank_filled_by_a_constant_outside_the_training_range_is_not_out_of_profile(churn_package, telco):
    """Churn fills a blank TotalCharges with 0, below the training minimum: each blank was counted as a row
    outside the training profile, in the batch summary and the server's metric (and its alert)."""
    feature_set = Scorer.open(churn_package).feature_set
    (charges,) = [i for i in feature_set.numeric if i.column == "TotalCharges"]
    assert charges.fill == 0 < charges.low
    record = telco.drop(columns="Churn").iloc[0].to_dict()
    blank = feature_set.record_values([{**record, "TotalCharges": " "}, {**record, "TotalCharges": None}])
    assert feature_set.out_of_profile(blank) == {}
    beyond = feature_set.record_values([{**record, "TotalCharges": charges.high * 2}])
    assert feature_set.out_of_profile(beyond) == {("TotalCharges", "above_training_max"): 1}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_folder(tmp_path) -> tuple[str, Path]:
    """A real HTTP server on loopback serving a folder."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_port}", folder
    server.shutdown()
    server.server_close()


def test_parquet_in_object_storage_and_csv_over_http_score_alike(churn_package, telco, s3_bucket, http_folder,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    url, folder = http_folder
    write_rows(telco, folder / "customers.csv", broken=False)
    telco.to_parquet(tmp_path / "customers.parquet")
    storage.upload_file(tmp_path / "customers.parquet", f"s3://{s3_bucket}/in/customers.parquet")
    package = f"s3://{s3_bucket}/models/churn"
    upload_package(churn_package, package)  # the package itself from object storage too, verified on the way
    log = tmp_path / "audit.jsonl"
    assert main(["score", package, "--input", f"s3://{s3_bucket}/in/customers.parquet",
                 "--output", f"s3://{s3_bucket}/out/scores.parquet", "--audit-log", str(log)]) == 0
    assert main(["score", str(churn_package), "--input", f"{url}/customers.csv", "--output",
                 str(tmp_path / "http.parquet"), "--chunk-rows", "40", "--audit-log", str(log)]) == 0
    storage.download_file(f"s3://{s3_bucket}/out/scores.parquet", tmp_path / "s3.parquet")
    storage.download_file(f"s3://{s3_bucket}/out/scores.quarantine.parquet", tmp_path / "s3-quarantine.parquet")
    from_s3, from_http = (pd.read_parquet(tmp_path / name).drop(columns="scored_at")
                          for name in ("s3.parquet", "http.parquet"))
    assert len(from_s3) == GOOD_ROWS and pd.read_parquet(tmp_path / "s3-quarantine.parquet").empty
    pd.testing.assert_frame_equal(from_s3, from_http)
    assert [record["what"]["counts"]["rows_scored"] for record in verify_audit_log(log)] == [GOOD_ROWS, GOOD_ROWS]


def test_a_utf8_file_with_a_byte_order_mark_and_windows_line_ends_scores_as_the_plain_file(churn_package, telco,
                                                                                          tmp_path):
    """As ingest reads it: Excel's "CSV UTF-8" starts with a byte-order mark, which became part of the first
    column's name ("\ufeffcustomerID"), and a model reading the first column refused the whole file."""
    plain = write_rows(telco, tmp_path / "plain.csv", broken=False)
    text = plain.read_text()
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    first = telco.columns[0]
    for name in ("plain", "excel"):
        assert main(["score", str(churn_package), "--input", str(tmp_path / f"{name}.csv"),
                     "--output", str(tmp_path / f"{name}.parquet")]) == 0
    plain_scores, excel_scores = (pd.read_parquet(tmp_path / f"{name}.parquet").drop(columns="scored_at")
                                  for name in ("plain", "excel"))
    assert first in excel_scores.columns and len(excel_scores) == GOOD_ROWS
    pd.testing.assert_frame_equal(plain_scores, excel_scores)


def test_a_file_written_another_way_than_the_training_data_scores_with_its_separator_and_encoding(
        churn_package, telco, tmp_path, capsys):
    """A trained package's use case is fixed, so "set data.encoding in the use case" was advice no one could
    follow: the file had to be rewritten before it could be scored."""
    plain = write_rows(telco, tmp_path / "plain.csv", broken=False)
    exported = tmp_path / "exported.csv"  # as Excel writes it in much of Europe: semicolons, latin-1
    exported.write_bytes(plain.read_text().replace(",", ";").encode("latin-1"))
    assert main(["score", str(churn_package), "--input", str(plain), "--output", str(tmp_path / "plain.parquet")]) == 0
    assert main(["score", str(churn_package), "--input", str(exported), "--output", str(tmp_path / "e.parquet"),
                 "--separator", ";", "--encoding", "latin-1"]) == 0
    plain_scores, exported_scores = (pd.read_parquet(tmp_path / name).drop(columns="scored_at")
                                     for name in ("plain.parquet", "e.parquet"))
    pd.testing.assert_frame_equal(plain_scores, exported_scores)
    capsys.readouterr()
    assert main(["score", str(churn_package), "--input", str(exported), "--output", str(tmp_path / "x.parquet"),
                 "--encoding", "klingon"]) == 1
    assert "unknown encoding 'klingon'" in capsys.readouterr().err
    # Without --separator its header is one column, 'customerID;gender;...': said so, not every column missing.
    assert main(["score", str(churn_package), "--input", str(exported), "--output", str(tmp_path / "x.parquet"),
                 "--encoding", "latin-1"]) == 1
    error = capsys.readouterr().err
    assert "the file looks ';'-separated: pass --separator ';'" in error and "has no column(s)" not in error
    assert not (tmp_path / "x.parquet").exists()


def test_a_parquet_index_and_a_bool_column_score_as_the_plain_file(churn_package, telco, tmp_path):
    """A frame saved after set_index("customerID") holds the ids only in the Parquet index: scoring said the data
    had no customerID. And SeniorCitizen saved as bool was quarantined in every row ('False' is not a number)."""
    plain = write_rows(telco, tmp_path / "plain.csv", broken=False)
    telco.set_index("customerID").to_parquet(tmp_path / "indexed.parquet")
    telco.assign(SeniorCitizen=telco["SeniorCitizen"] == "1").to_parquet(tmp_path / "bool.parquet")
    for name in (plain.name, "indexed.parquet", "bool.parquet"):
        assert main(["score", str(churn_package), "--input", str(tmp_path / name),
                     "--output", str(tmp_path / f"{name}.scores.parquet")]) == 0
    plain_scores, *others = (pd.read_parquet(tmp_path / f"{name}.scores.parquet").drop(columns="scored_at")
                             for name in (plain.name, "indexed.parquet", "bool.parquet"))
    assert plain_scores["customerID"].tolist() == telco["customerID"].tolist()
    for scores in others:
        pd.testing.assert_frame_equal(plain_scores, scores)


def test_a_column_blank_in_every_row_is_scored_on_its_fill_and_said(churn_package, telco, tmp_path, capsys):
    """TotalCharges blank in every row of a file (a column lost on export) was imputed and scored without a word."""
    emptied = write_rows(telco.assign(TotalCharges=""), tmp_path / "emptied.csv", broken=False)
    assert main(["score", str(churn_package), "--input", str(emptied), "--output", str(tmp_path / "e.parquet")]) == 0
    said = capsys.readouterr().out
    assert "warning: blank in every row, so scored on the training fill alone: TotalCharges" in said
    assert main(["score", str(churn_package), "--input", str(write_rows(telco, tmp_path / "plain.csv", False)),
                 "--output", str(tmp_path / "p.parquet")]) == 0
    assert "warning" not in capsys.readouterr().out


def test_a_utf8_file_read_as_latin1_is_said_to_read_as_utf8(churn_package, telco, tmp_path, capsys):
    """latin-1 decodes any byte, so a UTF-8 file scored as latin-1 raised nothing: its accented text read garbled
    ('Müller' as 'MÃ¼ller'), quarantined as an unknown category or, in an id, scored as such, and nothing said
    that the file's encoding was the cause."""
    plain = write_rows(telco, tmp_path / "plain.csv", broken=False)
    text = plain.read_text().replace(telco["customerID"].iloc[0], "0001-Müller", 1)
    for encoding in ("utf-8", "latin-1"):
        (tmp_path / f"{encoding}.csv").write_bytes(text.encode(encoding))
    hint = ("warning: the input reads as UTF-8, not latin-1: its accented letters read garbled ('ü' as 'Ã¼'), and "
            "rows holding them can be quarantined as values the contract does not know: pass --encoding utf-8")
    for name, encoding, said, first in [("utf-8", "latin-1", True, "0001-MÃ¼ller"),
                                        ("utf-8", "utf-8", False, "0001-Müller"),
                                        ("latin-1", "latin-1", False, "0001-Müller"),
                                        ("plain", "latin-1", False, telco["customerID"].iloc[0])]:
        out = tmp_path / f"{name}-as-{encoding}.parquet"
        assert main(["score", str(churn_package), "--input", str(tmp_path / f"{name}.csv"), "--output", str(out),
                     "--encoding", encoding]) == 0
        printed = capsys.readouterr().out
        assert (hint in printed.splitlines()) is said and ("UTF-8" in printed) is said, (name, encoding)
        assert pd.read_parquet(out)["customerID"].iloc[0] == first
    # Excel's "CSV UTF-8" starts with UTF-8's byte-order mark, which says what the file is: read as latin-1 its
    # first column was 'ï»¿customerID' and the run failed as missing a column, with no word of the encoding
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    out = tmp_path / "excel-as-latin-1.parquet"
    assert main(["score", str(churn_package), "--input", str(tmp_path / "excel.csv"), "--output", str(out),
                 "--encoding", "latin-1"]) == 0
    assert "UTF-8" not in capsys.readouterr().out and pd.read_parquet(out)["customerID"].iloc[0] == "0001-Müller"


def without_warnings(err: str) -> list[str]:
    """stderr's lines less the warnings a process shows once (an unsigned package's), first in whichever test
    runs first: the tests below failed alone and passed after another."""
    return [line for line in err.strip().splitlines() if not line.startswith("flowline: warning:")]


def test_a_run_that_quarantines_more_than_max_bad_fraction_fails_keeping_its_outputs(churn_package, telco, tmp_path,
                                                                                      capsys):
    """A scheduled run that scored nothing exited 0 (SeniorCitizen recoded No/Yes: every row quarantined). It
    fails as ingest does, with the counts and the reasons; the quarantine is written and recorded, to be read."""
    recoded = write_rows(telco.assign(SeniorCitizen=telco["SeniorCitizen"].map({"0": "No", "1": "Yes"})),
                         tmp_path / "recoded.csv", broken=False)
    out, log = tmp_path / "scores.parquet", tmp_path / "audit.jsonl"
    assert main(["score", str(churn_package), "--input", str(recoded), "--output", str(out),
                 "--audit-log", str(log)]) == 1
    captured = capsys.readouterr()
    assert f"rows in {GOOD_ROWS}, rows scored 0, rows quarantined {GOOD_ROWS}" in captured.out
    quarantine = tmp_path / "scores.quarantine.parquet"
    assert without_warnings(captured.err) == [
        f"flowline: score: {GOOD_ROWS} of {GOOD_ROWS} rows (100.0%) were quarantined, above max_bad_fraction 5.0% "
        f"of use case 'churn'. Reasons: SeniorCitizen: a value that is not a number ({GOOD_ROWS} rows). "
        f"The quarantine {quarantine} lists every row with its reason."]
    assert len(pd.read_parquet(quarantine)) == GOOD_ROWS and pd.read_parquet(out).empty
    assert verify_audit_log(log)[-1]["action"] == AUDIT_ACTION  # `flowline erase` finds the outputs
    # Within max_bad_fraction (7 of 150 rows, 4.7 %) the run passes.
    some = telco.copy()
    some.loc[some.index[:7], "SeniorCitizen"] = "Yes"
    assert main(["score", str(churn_package), "--input", str(write_rows(some, tmp_path / "some.csv", False)),
                 "--output", str(out), "--audit-log", str(log)]) == 0


@pytest.mark.parametrize("case, message", [
    ("missing column", "the data has no column(s) ['tenure']"),
    ("not parquet", "is not a readable Parquet file"),
    ("no file", "does not exist"),
    ("http 404", "cannot be read: HTTP Error 404"),
    ("not utf-8", "is not utf-8 text (invalid continuation byte): give the file's encoding (flowline score "
                  "--encoding"),
])
def test_bad_input_is_one_line_naming_it_and_leaves_no_output(case, message, churn_package, telco, http_folder,
                                                              tmp_path, capsys):
    url, _ = http_folder
    source = {"missing column": str(write_rows(telco.drop(columns="tenure"), tmp_path / "no-tenure.csv", False)),
              "not parquet": str(tmp_path / "garbage.parquet"), "no file": str(tmp_path / "absent.csv"),
              "http 404": f"{url}/absent.csv", "not utf-8": str(tmp_path / "latin-1.csv")}[case]
    (tmp_path / "latin-1.csv").write_bytes("customerID,gender\n1,Gar\xe7on\n".encode("latin-1"))
    (tmp_path / "garbage.parquet").write_bytes(b"PAR1 not really")
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    assert main(["score", str(churn_package), "--input", source, "--output", str(out), "--audit-log",
                 str(tmp_path / "audit.jsonl")]) == 1
    error = capsys.readouterr().err
    assert message in error and error.strip().splitlines()[-1].startswith("flowline: ")
    assert list(out.parent.iterdir()) == []  # no scores, no quarantine, no partial file
    assert not (tmp_path / "audit.jsonl").exists()  # a run that scored nothing is not recorded as one


def test_a_run_stopped_by_sigterm_leaves_nothing_and_a_killed_runs_leftover_is_removed(churn_package, telco,
                                                                                       tmp_path):
    source = write_rows(pd.concat([telco] * 400), tmp_path / "many.csv", False)  # 60,000 rows: seconds to score
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    leftover, in_flight = out.parent / f".{out.name}.x1.partial", out.parent / f".{out.name}.x2.partial"
    leftover.touch()  # a killed run's: nothing holds it
    holding = f"import fcntl, time; held = open({str(in_flight)!r}, 'a'); fcntl.flock(held, fcntl.LOCK_EX); " \
              "print('held', flush=True); time.sleep(120)"
    with subprocess.Popen([sys.executable, "-c", holding], stdout=subprocess.PIPE, text=True) as running:
        assert running.stdout.readline() == "held\n"  # another run, still going, holds its file
        command = [sys.executable, "-m", "flowline.pipelines.cli", "score", str(churn_package), "--input", str(source),
                   "--output", str(out), "--chunk-rows", "1000", "--audit-log", str(tmp_path / "audit.jsonl")]
        scoring = subprocess.Popen(command, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        theirs = {leftover.name, in_flight.name}
        while not [p for p in out.parent.glob("*.partial") if p.name not in theirs] and scoring.poll() is None:
            time.sleep(0.05)
        assert not leftover.exists() and in_flight.exists()  # the abandoned one removed, the held one kept
        scoring.send_signal(signal.SIGTERM)
        assert scoring.wait(60) == 128 + signal.SIGTERM
        running.kill()
    assert sorted(p.name for p in out.parent.iterdir()) == [in_flight.name]  # its own partial files removed
    assert not (tmp_path / "audit.jsonl").exists()


def test_as_of_on_a_package_that_scores_a_table_says_so(churn_package, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["score", str(churn_package), "--input", str(tmp_path / "x.csv"), "--as-of", "2024-01-01",
              "--output", str(tmp_path / "out.parquet"), "--audit-log", str(tmp_path / "audit.jsonl")])
    assert caught.value.code == 2
    assert ("--as-of scores every customer of a transaction log, but use case 'churn' scores the rows of a table"
            in capsys.readouterr().err)


@pytest.mark.parametrize(("options", "said"), [
    (["--output", "{tmp}/same.parquet", "--quarantine", "{tmp}/./same.parquet"],
     "--quarantine and --output name the same file"),
    (["--output", "{tmp}"], "--output {tmp} is a folder: give a file name"),
    # Written as Parquet under a .csv name, with the quarantine beside it as scores.csv.quarantine.parquet.
    (["--output", "{tmp}/scores.csv"], "--output {tmp}/scores.csv: scores and quarantines are written as Parquet; "
                                       "name it scores.parquet"),
])
def test_outputs_that_would_lose_rows_are_refused_before_scoring(options, said, churn_package, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["score", str(churn_package), "--input", str(tmp_path / "x.csv"),
              *[option.format(tmp=tmp_path) for option in options]])
    assert caught.value.code == 2 and said.format(tmp=tmp_path) in capsys.readouterr().err


def test_outputs_are_written_and_recorded_together_or_not_at_all(churn_package, telco, tmp_path, capsys):
    """An output no audit record names would escape `flowline erase`: when the log cannot record the run, the
    outputs go too. And where the outputs cannot be written is one line, not a traceback."""
    source = tmp_path / "rows.csv"
    telco.head(20).to_csv(source, index=False)
    (tmp_path / "a-file").write_text("")
    blocked = ["--input", str(source), "--audit-log", str(tmp_path / "a-file" / "audit.jsonl")]
    assert main(["score", str(churn_package), "--output", str(tmp_path / "scores.parquet"), *blocked]) == 1
    said = capsys.readouterr().err
    assert "the audit log could not record the run" in said and "so its outputs were removed" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "rows.csv"]
    assert main(["score", str(churn_package), "--input", str(source),
                 "--output", str(tmp_path / "a-file" / "scores.parquet")]) == 1
    said = capsys.readouterr().err
    assert without_warnings(said)[0].startswith("flowline: score: ") and f"{tmp_path / 'a-file'}" in said
    assert "Traceback" not in said


def test_a_transaction_log_package_without_as_of_asks_for_it(clv_package, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["score", str(clv_package), "--input", str(dataset_path("cdnow_master")),
              "--output", str(tmp_path / "clv.parquet")])
    assert caught.value.code == 2
    assert "scores the customers of transaction log 'clv': give --as-of YYYY-MM-DD" in capsys.readouterr().err


def test_clv_scores_every_customer_as_of_a_date_as_the_package_scores_its_test_rows(clv_package, tmp_path, capsys):
    log = tmp_path / "cdnow.txt"
    text = dataset_path("cdnow_master").read_text()
    log.write_text(text + " 99999 19970105  1   -5.00\n")  # a return the contract (min 0) refuses
    out = tmp_path / "clv.parquet"
    spec = load_use_case("clv").transactions
    assert main(["score", str(clv_package), "--input", str(log), "--as-of", spec.calibration_end.isoformat(),
                 "--output", str(out), "--audit-log", str(tmp_path / "audit.jsonl")]) == 0
    scores = pd.read_parquet(out).set_index("customer_id")
    # The package's own test rows are every customer at calibration_end: the same features, the same answers.
    packaged = Package.open(clv_package)
    test = pd.read_parquet(Path(clv_package).parent / "test")
    assert (test[CUTOFF_COLUMN].astype(str) == spec.calibration_end.isoformat()).all()
    expected = pd.Series(packaged.predict(test).astype(np.float32), index=test["customer_id"].astype(str))
    assert sorted(scores.index) == sorted(expected.index)
    assert np.array_equal(scores["prediction"].to_numpy(), expected[scores.index].to_numpy())
    scorer = Scorer.open(clv_package)
    assert scores["segment"].tolist() == scorer.segments(scores["prediction"].to_numpy())
    assert set(scores["package_version"]) == {scorer.version}
    assert set(scores["as_of"]) == {spec.calibration_end.isoformat()}  # the date valued at, not scored_at's
    quarantine = pd.read_parquet(tmp_path / "clv.quarantine.parquet")
    assert quarantine[REASON_COLUMN].tolist() == ["dollar_value: '-5.00' is below the minimum 0"]
    lines = len(text.strip().splitlines())  # the header and one line per transaction
    assert f"transactions in {lines:,}, transactions quarantined 1, customers scored {len(expected):,}" in \
        capsys.readouterr().out

    # Earlier, only the customers who had bought by then, from nothing after it.
    early = date(1997, 1, 20)
    assert main(["score", str(clv_package), "--input", str(log), "--as-of", early.isoformat(), "--output",
                 str(tmp_path / "early.parquet"), "--audit-log", str(tmp_path / "audit.jsonl")]) == 0
    frame = pd.read_csv(log, sep=r"\s+", dtype=str)
    bought = set(frame.loc[frame["date"] <= early.strftime("%Y%m%d"), "customer_id"]) - {"99999"}
    assert set(pd.read_parquet(tmp_path / "early.parquet")["customer_id"]) == bought
    later = len(set(frame["customer_id"]) - {"99999"}) - len(bought)  # left out, and counted: they had not come
    assert f"customers after as of {later:,}" in capsys.readouterr().out
    records = verify_audit_log(tmp_path / "audit.jsonl")
    assert [record["what"]["as_of"] for record in records] == [spec.calibration_end.isoformat(), early.isoformat()]

    # A log written another way reads with --separator and --encoding, as a table does: they were ignored.
    semicolons = tmp_path / "cdnow.csv"
    semicolons.write_bytes(frame.to_csv(sep=";", index=False).encode("latin-1"))
    assert main(["score", str(clv_package), "--input", str(semicolons), "--as-of", early.isoformat(), "--output",
                 str(tmp_path / "semicolons.parquet"), "--separator", ";", "--encoding", "latin-1",
                 "--audit-log", str(tmp_path / "audit.jsonl")]) == 0
    assert set(pd.read_parquet(tmp_path / "semicolons.parquet")["customer_id"]) == bought
    capsys.readouterr()
    semicolons.write_bytes(frame.assign(customer_id=frame["customer_id"].replace("00001", "Müller")).to_csv(
        sep=";", index=False).encode("utf-8"))  # UTF-8 read as latin-1: the hint, as for a table
    assert main(["score", str(clv_package), "--input", str(semicolons), "--as-of", early.isoformat(), "--output",
                 str(tmp_path / "semicolons.parquet"), "--separator", ";", "--encoding", "latin-1",
                 "--audit-log", str(tmp_path / "audit.jsonl")]) == 0
    assert "reads as UTF-8, not latin-1" in capsys.readouterr().out


def test_the_batch_pipeline_runs_through_kfp_local_and_records_the_run(churn_package, churn, telco, tmp_path):
    from kfp import local

    from flowline.pipelines.batch_pipeline import build_batch_pipeline

    source = write_rows(telco, tmp_path / "customers.csv", broken=True)
    log = tmp_path / "audit.jsonl"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               raise_on_error=True)
    run = build_batch_pipeline(churn)(package_uri=str(churn_package), input_uri=str(source), as_of="",
                                      audit_log=str(log))
    scores, quarantine = (pd.read_parquet(run.outputs[name].path) for name in ("scores", "quarantine"))
    assert (len(scores), len(quarantine)) == (GOOD_ROWS + 1, len(BROKEN))
    (record,) = verify_audit_log(log)
    assert record["what"]["counts"]["rows_quarantined"] == len(BROKEN)
    summary = next((tmp_path / "kfp").glob("*/score/summary")).read_text()
    assert f"| rows quarantined | {len(BROKEN)} |" in summary and Scorer.open(churn_package).version in summary
