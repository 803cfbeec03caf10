import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from flowline.components.ingest.contract import (
    REASON_COLUMN,
    ROW_COLUMN,
    ContractError,
    apply_contract,
    ingest_to_files,
    read_table,
)

MESSY = """id,age,income,plan,label
a1,30,1000.5,basic,no
a2,abc,200,pro,yes
a3,40,,pro,no
a4,,300,basic,yes
a5,25,400,gold,no
a6,33,500,basic,maybe
a7,150,600,pro,yes
a8,22.5,700,basic,no
a1,30,800,basic,no
a9,50, ,pro,yes
a10,-1,x,basic,yes
"""

EXPECTED_REASONS = {
    1: "age: 'abc' is not a number",
    3: "age: blank, but the column is not nullable",
    4: "plan: 'gold' is not one of ['basic', 'pro']",
    5: "label label: 'maybe' is not one of ['no', 'yes']",
    6: "age: '150' is above the maximum 120",
    7: "age: '22.5' is not an integer",
    8: "duplicate id in ['id']",
    10: "age: '-1' is below the minimum 0; income: 'x' is not a number",
}


def test_each_bad_row_is_quarantined_with_its_reason(write_csv, toy_use_case):
    raw = read_table(str(write_csv(MESSY)))
    result = apply_contract(raw.frame, toy_use_case)
    assert result.rows_in == 11
    assert len(result.kept) == 3 and len(result.quarantined) == 8
    assert len(result.kept) + len(result.quarantined) == result.rows_in
    reasons = dict(zip(result.quarantined[ROW_COLUMN], result.quarantined[REASON_COLUMN]))
    assert reasons == EXPECTED_REASONS
    # Quarantined rows keep their values as read, so nothing is lost.
    assert result.quarantined.loc[result.quarantined[ROW_COLUMN] == 1, "age"].item() == "abc"


def test_kept_rows_are_typed_and_blank_nullable_numbers_are_missing(write_csv, toy_use_case):
    kept = apply_contract(read_table(str(write_csv(MESSY))).frame, toy_use_case).kept
    assert list(kept.index) == [0, 2, 9]
    assert kept["age"].dtype == "float64" and kept["income"].dtype == "float64"
    assert kept.loc[0, "income"] == 1000.5
    assert kept["income"].isna().tolist() == [False, True, True]


def test_missing_columns_fail_at_once_naming_them(write_csv, toy_use_case):
    frame = read_table(str(write_csv("id,age,income\na1,3,4\n"))).frame
    with pytest.raises(ContractError, match=r"no column\(s\) \['plan', 'label'\]"):
        apply_contract(frame, toy_use_case)


def test_too_many_bad_rows_fail_after_writing_the_quarantine(write_csv, toy_use_case, tmp_path: Path):
    source = str(write_csv(MESSY))
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    with pytest.raises(ContractError, match=r"8 of 11 rows \(72.7%\).*above max_bad_fraction 50.0%"):
        ingest_to_files(toy_use_case, source, *outputs)
    assert len(pd.read_parquet(outputs[1])) == 8

    tolerant = toy_use_case.model_copy(update={"max_bad_fraction": 0.8})
    counts = ingest_to_files(tolerant, source, *outputs)
    assert counts["rows_in"] == counts["rows_kept"] + counts["rows_quarantined"] == 11
    assert counts["source_sha256"] == hashlib.sha256(Path(source).read_bytes()).hexdigest()
    assert "**Rows:** 11 in, 3 kept, 8 quarantined" in Path(outputs[2]).read_text()


def test_parquet_sources_are_held_to_the_same_contract(tmp_path: Path, toy_use_case):
    path = tmp_path / "rows.parquet"
    pd.DataFrame(
        {"id": ["a", "b"], "age": [30, -4], "income": [1.5, None], "plan": ["pro", "basic"], "label": ["no", "yes"]}
    ).to_parquet(path)
    result = apply_contract(read_table(str(path)).frame, toy_use_case)
    assert len(result.kept) == 1
    assert result.quarantined[REASON_COLUMN].tolist() == ["age: '-4' is below the minimum 0"]


def test_http_sources_are_read_over_real_http(write_csv, toy_use_case):
    path = write_csv(MESSY)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        raw = read_table(f"http://127.0.0.1:{server.server_port}/{path.name}")
    finally:
        server.shutdown()
    assert raw.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(apply_contract(raw.frame, toy_use_case).quarantined) == 8


def test_churn_keeps_every_telco_row_and_its_blank_total_charges(data_home, churn, tmp_path: Path):
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    counts = ingest_to_files(churn, "", *outputs)
    assert (counts["rows_in"], counts["rows_kept"], counts["rows_quarantined"]) == (7043, 7043, 0)
    kept = pd.read_parquet(outputs[0])
    blank = kept["TotalCharges"].isna()
    assert blank.sum() == 11 and (kept.loc[blank, "tenure"] == 0).all()


def test_datetimes_are_parsed_with_their_format_and_bad_ones_quarantined(write_csv):
    from flowline.pipelines.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "orders", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "time_column": "day", "columns": {"day": {"type": "datetime", "format": "%Y%m%d"}, "items": {"type": "integer"}},
        "max_bad_fraction": 0.5,
    })
    path = write_csv("day,items,spend\n19970101,1,10\n19970231,2,20\n1997-03-01,3,30\n19970315,4,40\n")
    result = apply_contract(read_table(str(path)).frame, use_case)
    assert result.kept["day"].tolist() == [pd.Timestamp("1997-01-01"), pd.Timestamp("1997-03-15")]
    reasons = result.quarantined[REASON_COLUMN].tolist()
    assert reasons == ["day: '19970231' is not a date (%Y%m%d)", "day: '1997-03-01' is not a date (%Y%m%d)"]


def test_request_checks_refuse_a_date_that_does_not_parse():
    from flowline.inference_services.request_checks import BadRequest, RecordChecker
    from flowline.pipelines.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "orders", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "time_column": "at", "columns": {"at": {"type": "datetime"}, "items": {"type": "integer"}},
    })
    checker = RecordChecker(use_case, ["at", "items"])
    checker.check_record({"at": "2026-01-02T10:00:00Z", "items": 2}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\]\.at: 'yesterday' is not a date \(ISO 8601\)"):
        checker.check_record({"at": "yesterday", "items": 2}, "instances[0]")
