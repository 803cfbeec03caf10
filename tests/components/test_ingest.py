import gzip
import hashlib
import http.server
import re
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flowline.components.ingest.ingestion import ingest_to_files
from flowline.contract import (
    ENCODING_SNIFF_BYTES,
    EXTRA_COLUMN,
    REASON_COLUMN,
    ROW_COLUMN,
    ContractError,
    apply_contract,
    read_table,
    read_use_case_table,
    reads_as_utf8,
)
from flowline.use_case import ColumnSpec, UseCase, UseCaseError
from flowline.use_case_loader import parse_use_case

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


def test_a_bool_parquet_column_declared_numeric_reads_as_0_and_1(tmp_path: Path, toy_use_case):
    """pandas saves a 0/1 column it holds as bool (SeniorCitizen) as a Parquet bool: 'False' as text is not a
    number, and every row was quarantined."""
    use_case = toy_use_case.model_copy(update={"columns": {
        **toy_use_case.columns, "senior": ColumnSpec(type="integer", min=0, max=1),
        "member": ColumnSpec(type="number", nullable=True)}})
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"id": ["a", "b", "c"], "age": [30, 40, 50], "income": [1.5, 2.0, 3.0],
                  "plan": ["pro", "basic", "pro"], "senior": [True, False, True],
                  "member": pd.array([True, None, False], dtype="boolean"), "label": ["no", "yes", "no"]}
                 ).to_parquet(path)
    result = apply_contract(read_table(str(path)).frame, use_case)
    assert result.quarantined.empty
    assert result.kept["senior"].tolist() == [1.0, 0.0, 1.0]
    assert result.kept["member"].fillna(-1).tolist() == [1.0, -1, 0.0]


@pytest.mark.parametrize("index", [["id"], ["id", "plan"]], ids=["one", "two levels"])
def test_a_parquet_index_comes_back_as_columns_and_rows_are_numbered_from_0(tmp_path: Path, toy_use_case, index):
    """A frame saved after set_index("id") holds its ids only in the Parquet index, which pandas restores as the
    index: the id column was missing, and quarantined rows were numbered by id."""
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"id": ["a", "b", "c"], "age": [30, -4, 50], "income": [1.5, 2.0, None],
                  "plan": ["pro", "basic", "pro"], "label": ["no", "yes", "no"]}).set_index(index).to_parquet(path)
    frame = read_table(str(path)).frame
    assert list(frame.columns[:len(index)]) == index and frame.index.equals(pd.RangeIndex(3))
    result = apply_contract(frame, toy_use_case)
    assert result.kept["id"].tolist() == ["a", "c"]
    assert result.quarantined[[ROW_COLUMN, "id"]].values.tolist() == [[1, "b"]]


@pytest.mark.parametrize("rows, name", [(slice(1, None), None), ([0, 2, 3], None), (slice(1, None), "row")],
                         ids=["a range", "a filtered frame's labels", "a named range"])
def test_an_unnamed_parquet_index_or_a_range_stays_dropped(tmp_path: Path, rows, name):
    path = tmp_path / "rows.parquet"
    frame = pd.DataFrame({"age": [30, 40, 50, 60]}).iloc[rows]
    frame.index.name = name
    frame.to_parquet(path)  # row labels, not data, as batch scoring reads them
    frame = read_table(str(path)).frame
    assert list(frame.columns) == ["age"] and frame.index.equals(pd.RangeIndex(3))


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


def test_card_fraud_keeps_its_sample_and_refuses_a_time_outside_its_two_days(data_home):
    """Time is seconds into the data's two days: sent as epoch seconds or milliseconds, the linear member had
    extrapolated every flag away (0 of 98 frauds flagged, all answered 200). The contract bounds it."""
    from flowline.contract import apply_contract, read_use_case_table
    from flowline.inference_services.request_checks import BadRequest, RecordChecker
    from flowline.use_case_loader import load_use_case

    fraud = load_use_case("fraud")
    result = apply_contract(read_use_case_table(fraud).frame, fraud)
    assert len(result.kept) == 3265 and len(result.quarantined) == 0
    record = {column: 0.5 for column in fraud.columns}
    checker = RecordChecker(fraud, list(fraud.columns))
    checker.check_record({**record, "Time": 172632.0}, "instances[0]")
    for sent in (1.765e9, 1.765e12):
        with pytest.raises(BadRequest, match=r"instances\[0\]\.Time: .* is outside \[0(\.0)?, 172800(\.0)?\]"):
            checker.check_record({**record, "Time": sent}, "instances[0]")


def test_datetimes_are_parsed_with_their_format_and_bad_ones_quarantined(write_csv):
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "orders", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "time_column": "day", "columns": {"day": {"type": "datetime", "format": "%Y%m%d"}, "items": {"type": "integer"}},
        "max_bad_fraction": 0.5,
    })
    # pandas reads %Y%m%d's 199712 as 1997-01-02 and 1997112 as 1997-11-02: a short compact date is no date
    path = write_csv("day,items,spend\n19970101,1,10\n19970231,2,20\n1997-03-01,3,30\n19970315,4,40\n"
                     "199712,5,50\n1997112,6,60\n")
    result = apply_contract(read_table(str(path)).frame, use_case)
    assert result.kept["day"].tolist() == [pd.Timestamp("1997-01-01"), pd.Timestamp("1997-03-15")]
    reasons = result.quarantined[REASON_COLUMN].tolist()
    assert reasons == ["day: '19970231' is not a date (%Y%m%d)", "day: '1997-03-01' is not a date (%Y%m%d)",
                       "day: '199712' is not a date (%Y%m%d)", "day: '1997112' is not a date (%Y%m%d)"]


def test_a_time_without_an_offset_is_utc_whatever_its_neighbours_write():
    """pandas 2.3 read '2026-01-17 04:59:00' after a row at '-05:00' at that offset (09:59 UTC), where the server,
    parsing one value at a time, read 04:59 UTC: a row's score hung on its neighbours and on the chunk size (the
    train/serve audit). Each value now reads as it does alone."""
    from flowline.contract import parse_datetimes

    values = ["2026-01-17 04:59:00-05:00", "2026-01-17 04:59:00", "2026-01-17T09:59:00Z", "2026-01-17 04:59",
              "2026-01-17", "2026-01-17T04:59:00.5+0100", "2026-01-17T04:59:00+01", None, "yesterday"]
    together = parse_datetimes(pd.Series(values, dtype="string"), None)
    alone = [parse_datetimes(pd.Series([value], dtype="string"), None).iloc[0] for value in values]
    assert together.tolist()[:7] == alone[:7] == [
        pd.Timestamp("2026-01-17 09:59"), pd.Timestamp("2026-01-17 04:59"), pd.Timestamp("2026-01-17 09:59"),
        pd.Timestamp("2026-01-17 04:59"), pd.Timestamp("2026-01-17"), pd.Timestamp("2026-01-17 03:59:00.5"),
        pd.Timestamp("2026-01-17 03:59")]
    assert together.iloc[7:].isna().all() and together.dtype == "datetime64[ns]"


def test_request_checks_refuse_a_date_that_does_not_parse():
    from flowline.inference_services.request_checks import BadRequest, RecordChecker
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "orders", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "time_column": "at", "columns": {"at": {"type": "datetime"}, "items": {"type": "integer"}},
    })
    checker = RecordChecker(use_case, ["at", "items"])
    checker.check_record({"at": "2026-01-02T10:00:00Z", "items": 2}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\]\.at: 'yesterday' is not a date \(ISO 8601\)"):
        checker.check_record({"at": "yesterday", "items": 2}, "instances[0]")


def test_dates_outside_the_declared_earliest_and_latest_days_are_quarantined_and_refused(write_csv):
    """A transaction of 1947 in a 1997 log moved its customer from low to mid value, and a contract could not say
    which dates are plausible: earliest and latest do, in ingest, batch scoring and requests alike."""
    from pydantic import ValidationError

    from flowline.inference_services.request_checks import BadRequest, RecordChecker
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "orders", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "time_column": "day", "max_bad_fraction": 0.5,
        "columns": {"day": {"type": "datetime", "format": "%Y%m%d", "earliest": "1997-01-01", "latest": "1998-06-30"},
                    "items": {"type": "integer"}},
    })
    path = write_csv("day,items,spend\n19970101,1,10\n19470101,2,20\n19980630,3,30\n19980701,4,40\n")
    result = apply_contract(read_table(str(path)).frame, use_case)
    assert result.kept["day"].tolist() == [pd.Timestamp("1997-01-01"), pd.Timestamp("1998-06-30")]
    assert result.quarantined[REASON_COLUMN].tolist() == ["day: '19470101' is before the earliest day 1997-01-01",
                                                          "day: '19980701' is after the latest day 1998-06-30"]
    checker = RecordChecker(use_case, ["day", "items"])
    checker.check_batch([{"day": "19980630", "items": 1}], "instances", 10)
    for text, bound in (("19470101", "before the earliest day 1997-01-01"), ("19980701", "after the latest day")):
        with pytest.raises(BadRequest, match=rf"instances\[1\]\.day: '{text}' is {bound}"):
            checker.check_batch([{"day": "19970105", "items": 1}, {"day": text, "items": 1}], "instances", 10)
    with pytest.raises(ValidationError, match="earliest 1999-01-01 is after latest 1998-06-30"):
        UseCase.model_validate({**use_case.model_dump(mode="json"), "columns": {
            "day": {"type": "datetime", "earliest": "1999-01-01", "latest": "1998-06-30"}, "items": {"type": "integer"}}})


def test_a_batch_s_dates_are_parsed_at_once_and_the_first_that_does_not_parse_is_named():
    """A batch's dates are parsed in one call (one at a time took 1 ms each: an events push of 10,000 records,
    16 s), with what the one-at-a-time check refuses still refused, naming its record."""
    from flowline.inference_services.request_checks import BadRequest, RecordChecker
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate({
        "name": "orders", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
        "time_column": "at", "columns": {"at": {"type": "datetime"}, "items": {"type": "integer"}},
    })
    checker = RecordChecker(use_case, ["at", "items"])
    good = [{"at": at, "items": 1} for at in ("2026-01-02T10:00:00Z", " 2026-01-02 ", "2026-01-17T04:59:00-05:00")]
    assert checker.check_batch(good * 3, "instances", 100) == good * 3
    for bad, named in [("2026-13-01", "'2026-13-01' is not a date"), (" ", "blank is not allowed"),
                       (20260102, "expected a string, got 20260102")]:
        with pytest.raises(BadRequest, match=rf"instances\[4\]\.at: {named}"):
            checker.check_batch([*good, good[0], {"at": bad, "items": 1}, *good], "instances", 100)


def toy_rows(count: int) -> list[str]:
    """Well-formed rows of the toy use case's columns (id, age, income, plan, label)."""
    return [f"c{i},{20 + i % 50},{100 + i}.5,{('basic', 'pro')[i % 2]},{('no', 'yes')[i % 3 == 0]}"
            for i in range(count)]


def test_lines_with_extra_or_missing_fields_are_quarantined_naming_the_line(write_csv, toy_use_case, tmp_path: Path):
    rows = toy_rows(97)
    rows[10] += ",surplus"                 # 6 fields: an unquoted comma in the last column, say
    rows[40] += ",x,y"                     # 7 fields
    rows[70] = "c70,33"                    # 2 fields
    source = str(write_csv("id,age,income,plan,label\n" + "\n".join(rows) + "\n"))
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    counts = ingest_to_files(toy_use_case.model_copy(update={"max_bad_fraction": 0.05}), source, *outputs)
    assert (counts["rows_in"], counts["rows_kept"], counts["rows_quarantined"]) == (97, 94, 3)
    quarantine = pd.read_parquet(outputs[1])
    assert quarantine[ROW_COLUMN].tolist() == [10, 40, 70]
    assert quarantine[REASON_COLUMN].tolist() == [
        "line 12: 6 fields, but the header has 5", "line 42: 7 fields, but the header has 5",
        "line 72: 2 fields, but the header has 5"]
    # Nothing of a bad line is lost: its fields under the header's names, the surplus beside them.
    assert quarantine.loc[0, ["id", "label", EXTRA_COLUMN]].tolist() == ["c10", "no", "surplus"]
    assert quarantine.loc[1, EXTRA_COLUMN] == "x,y"
    assert quarantine.loc[2, ["id", "age"]].tolist() == ["c70", "33"] and pd.isna(quarantine.loc[2, "plan"])
    kept = pd.read_parquet(outputs[0])
    assert 10 not in kept.index and kept.index[10] == 11  # row numbers stay those of the file

    with pytest.raises(ContractError, match=r"3 of 97 rows \(3.1%\).*above max_bad_fraction 1.0%.*a line: 6 fields, but the "
                                            r"header has 5 \(1 row\)"):
        ingest_to_files(toy_use_case.model_copy(update={"max_bad_fraction": 0.01}), source, *outputs)


@pytest.mark.parametrize("count", [97, 5000])  # 5,000 rows: the swallowed field would pass csv's size limit
def test_a_quote_never_closed_costs_its_own_line_not_the_rest_of_the_file(write_csv, toy_use_case, tmp_path: Path,
                                                                          count: int):
    rows = toy_rows(count)
    rows[5] = '"c5\nsplit",70,150.5,pro,no'  # a quoted field on two lines (file lines 7-8) is one row, as before
    rows[10] = 'c10,"30,100.5,basic,no'  # file line 13: the quote would swallow the 86 lines after it
    source = write_csv("id,age,income,plan,label\n" + "\n".join(rows) + "\n")
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    counts = ingest_to_files(toy_use_case.model_copy(update={"max_bad_fraction": 0.05}), str(source), *outputs)
    assert (counts["rows_in"], counts["rows_kept"], counts["rows_quarantined"]) == (count, count - 1, 1)
    quarantine = pd.read_parquet(outputs[1])
    assert quarantine[REASON_COLUMN].tolist() == ["line 13: 2 fields, but the header has 5"]
    assert quarantine.loc[0, ["id", "age"]].tolist() == ["c10", "30,100.5,basic,no"]
    kept = pd.read_parquet(outputs[0])
    assert kept.loc[5, "id"] == "c5\nsplit" and kept.loc[11, "id"] == "c11"
    assert kept.loc[count - 1, "id"] == f"c{count - 1}"
    # Batch scoring reads the file as a stream with the same parser: the same records.
    from flowline.quarantine import split_lines

    with open(source, newline="") as stream:
        assert list(split_lines(stream, ",")) == list(split_lines(source.read_text(), ","))


def test_quoted_separators_and_blank_lines_are_not_malformed(write_csv, toy_use_case):
    raw = read_table(str(write_csv('id,age,income,plan,label\n"a,1",30,1,basic,no\n\na2,31,"2",pro,yes\n')))
    assert raw.frame["id"].tolist() == ["a,1", "a2"] and raw.malformed.empty
    assert len(apply_contract(raw.frame, toy_use_case, raw.malformed).kept) == 2


def test_an_exponent_past_2_to_the_31_is_quarantined_not_a_crash(write_csv, toy_use_case):
    """pandas 2.3's parser overflows such an exponent and kills the process (a segfault) if it ever sees one."""
    raw = read_table(str(write_csv("id,age,income,plan,label\na1,30,0e2147483648,basic,no\na2,31,8E8533691250,pro,no\n"
                                   "a3,32,5,pro,yes\n")))
    result = apply_contract(raw.frame, toy_use_case, raw.malformed)
    assert result.quarantined[REASON_COLUMN].tolist() == ["income: '0e2147483648' is not a number",
                                                          "income: '8E8533691250' is not a finite number"]
    assert result.kept["income"].tolist() == [5.0]


@pytest.mark.parametrize("value", ["inf", "-inf", "1e999", "Infinity", "-Infinity", "INF"])
def test_non_finite_numbers_break_the_contract_naming_the_column(write_csv, toy_use_case, value):
    raw = read_table(str(write_csv(f"id,age,income,plan,label\na1,30,{value},basic,no\na2,31,5,pro,yes\n")))
    result = apply_contract(raw.frame, toy_use_case, raw.malformed)
    assert result.quarantined[REASON_COLUMN].tolist() == [f"income: '{value}' is not a finite number"]
    assert result.kept["income"].tolist() == [5.0]


def test_non_finite_numbers_in_parquet_and_in_a_regression_label_are_quarantined(tmp_path: Path):
    use_case = UseCase.model_validate({
        "name": "spend", "task": "regression", "data": {"path": "x.parquet"}, "label": {"column": "spend"},
        "columns": {"visits": {"type": "number"}}, "tuning": {"objective": "tweedie"}})
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"visits": [1.0, float("inf"), 3.0, 4.0], "spend": [1.0, 2.0, float("-inf"), -5.0]}).to_parquet(path)
    result = apply_contract(read_table(str(path)).frame, use_case)
    assert result.quarantined[REASON_COLUMN].tolist() == [
        "visits: 'inf' is not a finite number", "label spend: '-inf' is not a finite number",
        "label spend: '-5.0' is below the minimum 0"]  # a Tweedie loss cannot take a negative label
    assert result.kept["spend"].tolist() == [1.0]


def encoded_use_case(path: Path, **data) -> UseCase:
    return parse_use_case({
        "name": "cities", "task": "regression", "data": {"path": str(path), **data}, "label": {"column": "sales"},
        "columns": {"city": {"type": "category", "allowed": ["Zürich", "Köln"]}}})


def test_a_latin1_file_read_as_utf8_says_which_encoding_to_set(tmp_path: Path):
    path = tmp_path / "cities.csv"
    path.write_bytes("city,sales\nZürich,10\nKöln,20\n".encode("latin-1"))
    with pytest.raises(ContractError, match=r"cities.csv is not utf-8 text: byte 12 \(b'\\xfc'\) cannot be decoded\. "
                                            r"Set data.encoding in the use case.*data.encoding: latin-1"):
        read_use_case_table(encoded_use_case(path))
    raw = read_use_case_table(encoded_use_case(path, encoding="latin-1"))
    result = apply_contract(raw.frame, encoded_use_case(path, encoding="latin-1"))
    assert result.kept["city"].tolist() == ["Zürich", "Köln"] and result.quarantined.empty


@pytest.mark.parametrize("text, written, expected", [
    ("city\nMünchen\n", "utf-8", True),
    ("city\n€ 5\n", "utf-8", True),
    ("city\nMünchen\n", "latin-1", False),
    ("city\nCafé\n", "latin-1", False),  # 0xE9 then a newline: no UTF-8 sequence
    ("city\nCafé", "latin-1", False),  # 0xE9 the last byte: a sequence the file never finishes
    ("city\nMunich\n", "utf-8", False),  # ASCII reads the same in either
    ("city\nMünchen\n", "utf-16", False),
], ids=["utf-8", "utf-8 euro", "latin-1", "latin-1 e-acute", "latin-1 ending in e-acute", "ascii", "utf-16"])
def test_a_utf8_file_is_told_from_a_latin1_one_by_its_bytes(text: str, written: str, expected: bool):
    assert reads_as_utf8(text.encode(written), "latin-1") is expected
    assert reads_as_utf8(text.encode(written), "cp1252") is expected
    assert not reads_as_utf8(text.encode(written), "utf-8")  # read as what it is, or refused as not utf-8


def test_only_the_first_bytes_are_looked_at_and_a_character_cut_there_is_no_sign_against_utf8():
    payload = b"x" * (ENCODING_SNIFF_BYTES - 1) + "ü".encode("utf-8") + b"\n"  # 'ü' astride the sample's end
    assert reads_as_utf8(payload, "latin-1")
    assert not reads_as_utf8(b"x" * ENCODING_SNIFF_BYTES + "ü".encode("utf-8"), "latin-1")  # beyond: not read


@pytest.mark.parametrize("written, warned", [("utf-8", True), ("latin-1", False), ("ascii", False)])
def test_a_utf8_file_under_a_latin1_use_case_is_said_to_read_as_utf8(tmp_path: Path, capsys, written: str,
                                                                    warned: bool):
    """latin-1 decodes any byte, so a UTF-8 file read with it raised nothing: 'Zürich' read 'ZÃ¼rich' and was
    quarantined as not one of the allowed cities, and nothing said the encoding was the cause."""
    path = tmp_path / "cities.csv"
    text = "city,sales\nZürich,10\nKöln,20\n" if written != "ascii" else "city,sales\nZurich,10\nKoln,20\n"
    path.write_bytes(text.encode(written))
    use_case = encoded_use_case(path, encoding="latin-1").model_copy(update={"max_bad_fraction": 1.0})
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    counts = ingest_to_files(use_case, "", *outputs)
    hints = [line for line in capsys.readouterr().out.splitlines() if "UTF-8" in line]
    assert hints == ([f"ingest: warning: {path} reads as UTF-8, not latin-1: its accented letters read garbled "
                      "('ü' as 'Ã¼'), and rows holding them can be quarantined as values the contract does not "
                      "know: set data.encoding: utf-8 in the use case"] if warned else [])
    assert counts["rows_quarantined"] == (0 if written == "latin-1" else 2)
    reasons = pd.read_parquet(outputs[1])[REASON_COLUMN].tolist()  # the rows' own reasons stay as they were
    read = {"utf-8": ["ZÃ¼rich", "KÃ¶ln"], "latin-1": [], "ascii": ["Zurich", "Koln"]}[written]
    assert reasons == [f"city: '{city}' is not one of ['Zürich', 'Köln']" for city in read]


def test_utf8s_byte_order_mark_says_the_file_is_utf8_whatever_the_use_case_says(tmp_path: Path, capsys):
    """Excel's "CSV UTF-8" starts with the mark: read as latin-1 its first column was named 'ï»¿city' and every
    row failed as missing a column, with no word of the encoding."""
    path = tmp_path / "cities.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "city,sales\nZürich,10\nKöln,20\n".encode("utf-8"))
    use_case = encoded_use_case(path, encoding="latin-1")
    raw = read_use_case_table(use_case)
    assert list(raw.frame.columns) == ["city", "sales"] and raw.utf8_misread_as is None
    assert apply_contract(raw.frame, use_case).kept["city"].tolist() == ["Zürich", "Köln"]


def test_an_unknown_encoding_is_refused_by_the_schema(tmp_path: Path):
    with pytest.raises(UseCaseError, match=r"data.encoding: unknown encoding 'latin-9x'"):
        encoded_use_case(tmp_path / "x.csv", encoding="latin-9x")


@pytest.mark.parametrize("payload, name, message", [
    # mtime=0: the same bytes in every xdist worker, which must collect the same test ids
    (gzip.compress(b"id,age\na1,3\n" * 50, mtime=0), "rows.csv", r"rows.csv is a binary file, not a text table"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "rows.csv", r"rows.csv is a binary file, not a text table"),
    ("id,age\n".encode("utf-16"), "rows.csv", r"rows.csv has a header \(2 columns\) but no rows"),
    (b"id,age\na1,3\n", "rows.parquet", r"rows.parquet is not a readable Parquet file"),
    (b"", "rows.csv", r"rows.csv is empty: it has no header and no rows"),
    (b"\n\n", "rows.csv", r"rows.csv is empty"),
], ids=["gzip", "png", "utf-16 header only", "csv named parquet", "empty", "blank lines"])
def test_files_that_are_not_tables_get_a_clear_error(tmp_path: Path, payload: bytes, name: str, message: str):
    path = tmp_path / name
    path.write_bytes(payload)
    encoding = "utf-16" if payload.startswith(b"\xff\xfe") else "utf-8"
    with pytest.raises(ContractError, match=message):
        read_table(str(path), encoding=encoding)


def test_a_header_without_rows_is_an_error_that_says_so(write_csv):
    with pytest.raises(ContractError, match=r"data.csv has a header \(5 columns\) but no rows"):
        read_table(str(write_csv("id,age,income,plan,label\n")))


def test_repeated_column_names_are_an_error_naming_them(write_csv, tmp_path: Path):
    with pytest.raises(ContractError, match=r"the header names column\(s\) \['age', 'plan'\] more than once"):
        read_table(str(write_csv("id,age,plan,age,income,plan,label\na1,3,basic,4,5,pro,no\n")))
    # pandas would have renamed the second to age.1 and the contract would silently read the first.
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["tenure", "tenure"]), path)
    with pytest.raises(ContractError, match=r"\['tenure'\] more than once"):
        read_table(str(path))


def test_the_profile_never_records_the_values_of_id_columns(write_csv, toy_use_case, tmp_path: Path):
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    ingest_to_files(toy_use_case.model_copy(update={"max_bad_fraction": 0.8}), str(write_csv(MESSY)), *outputs)
    shown = Path(outputs[2]).read_text()
    assert "| id | id | 0 | 3 |" in shown and "| plan | feature | 0 | 2 |" in shown
    assert "pro (2), basic (1)" in shown  # other text columns keep their top values
    assert not any(kept_id in shown for kept_id in ("a1", "a3", "a9"))


@pytest.mark.pipeline
@pytest.mark.parametrize("broken, cause", [
    (lambda text: text.replace("Female", "Femme\xe9").encode("latin-1"),
     r"step 'ingest': ContractError: \S+telco.csv is not utf-8 text: byte \d+ \(b'\\xe9'\) cannot be decoded\. "
     r"Set data.encoding in the use case .*data.encoding: latin-1\)"),
    (lambda text: "\n".join(line + ",extra" if n % 4 == 3 else line
                            for n, line in enumerate(text.splitlines())).encode(),
     r"step 'ingest': ContractError: 50 of 200 rows \(25.0%\) break the data contract of use case 'churn', above "
     r"max_bad_fraction 5.0%\. Reasons: a line: 22 fields, but the header has 21 \(50 rows\)\. The quarantine \S+"
     r"ingest/quarantine lists every row with its reason\."),
])
def test_a_failed_run_leaves_its_root_cause_in_one_line_in_the_audit_log(data_home, tmp_path: Path, capsys,
                                                                         broken, cause):
    from flowline.audit import verify
    from flowline.pipelines.cli import EXIT_ERROR, main

    text = "\n".join(Path(data_home, "telco_customer_churn.csv").read_text().splitlines()[:201]) + "\n"
    source = tmp_path / "telco.csv"
    source.write_bytes(broken(text))
    runs = tmp_path / "runs"
    assert main(["run", "churn", "--source", str(source), "--runs-dir", str(runs)]) == EXIT_ERROR
    shown = capsys.readouterr()
    (record,) = verify(runs / "audit.jsonl")
    error = record["what"]["error"]
    assert record["action"] == "pipeline_run" and record["what"]["outcome"] == "failed"
    assert re.fullmatch(cause + ".*", error)
    assert "\n" not in error and "\x1b" not in error and "Traceback" not in error
    assert f"flowline: run failed: {error}" in shown.err
    if "rows" in error:  # the quarantine was written before the run failed
        assert len(pd.read_parquet(next(runs.glob("churn-*/*/ingest/quarantine")))) == 50


@pytest.mark.parametrize("setting", ["warn", "ignore", "error"])
def test_undeclared_columns_are_named_never_dropped_silently(write_csv, toy_use_case, tmp_path: Path, capsys,
                                                             setting: str):
    header, *rows = MESSY.splitlines()
    source = str(write_csv("\n".join([f"{header},region,score", *(f"{row},x,1" for row in rows)]) + "\n"))
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    use_case = toy_use_case.model_copy(update={"max_bad_fraction": 0.8, "undeclared": setting})
    if setting == "error":
        with pytest.raises(ContractError, match=r"2 column\(s\) in the data are not declared in the contract of use "
                                                 r"case 'toy' and are not used: \['region', 'score'\]; declare them"):
            ingest_to_files(use_case, source, *outputs)
        assert not Path(outputs[0]).exists()
        return
    counts = ingest_to_files(use_case, source, *outputs)
    assert counts["rows_kept"] == 3
    assert counts["undeclared_columns"] == ["region", "score"]  # to the package's lineage and model card
    warnings = [line for line in capsys.readouterr().out.splitlines() if "not declared" in line]
    assert warnings == (["ingest: warning: 2 column(s) in the data are not declared in the contract of use case "
                         "'toy' and are not used: ['region', 'score']"] if setting == "warn" else [])
    assert "**Undeclared columns (not used):** region, score" in Path(outputs[2]).read_text()


def test_the_undeclared_setting_defaults_to_warn_and_refuses_other_values(toy_use_case):
    document = toy_use_case.model_dump(mode="json")
    assert toy_use_case.undeclared == "warn"
    with pytest.raises(UseCaseError, match=r"undeclared: Input should be 'error', 'warn' or 'ignore'"):
        parse_use_case({**document, "undeclared": "drop"})


@pytest.mark.parametrize("separator, text", [
    (",", 'id,note\n1,"two\nlines"\n\n2,"a, b"\n3\n'),
    (r"\s+", "id  note\n 1   x\n\n2 y z\n"),
    (";|\\|", "id;note\n1|x\n2;y;z\n"),
])
def test_a_stream_splits_into_the_same_records_as_its_text(separator, text, tmp_path: Path):
    """Batch scoring reads large files as a stream with the parser ingest uses on the whole text."""
    from flowline.quarantine import split_lines

    path = tmp_path / "table.txt"
    path.write_text(text)
    with open(path, newline="") as stream:
        assert list(split_lines(stream, separator)) == list(split_lines(text, separator))


def test_too_many_bad_rows_are_summed_up_by_reason_without_their_values():
    """The error the dashboard shows on a failed ingest (KFP keeps no output of a failed step): each reason once,
    with its rows, the commonest first, never the cells' values (the message reaches the audit log)."""
    from flowline.contract import reason_counts

    reasons = pd.Series(["credit_amount: 'abc' is not a number", "credit_amount: 'x1' is not a number",
                         "plan: 'gold' is not one of ['basic', 'pro']; credit_amount: '?' is not a number",
                         "line 7: 3 fields, but the header has 5", "line 9: 8 fields, but the header has 5"])
    assert reason_counts(reasons) == ("credit_amount: a value that is not a number (3 rows); plan: a value that is "
                                      "not one of ['basic', 'pro'] (1 row); a line: 3 fields, but the header has 5 "
                                      "(1 row); and 1 other reason(s)")
    assert "abc" not in reason_counts(reasons, shown=10) and "gold" not in reason_counts(reasons, shown=10)


def test_a_wide_table_is_typed_without_pandas_fragmentation_warnings():
    """300 columns made `flowline validate` print pandas' "highly fragmented" PerformanceWarning seven times."""
    import warnings

    from flowline.contract import apply_contract
    from flowline.use_case import UseCase

    columns = {f"c{i}": {"type": "number"} for i in range(300)}
    use_case = UseCase.model_validate({
        "name": "wide", "task": "binary", "data": {"path": "wide.csv"}, "columns": columns,
        "label": {"column": "y", "positive": "1", "values": ["0", "1"]}, "costs": {"false_negative": 1, "false_positive": 1}})
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 300)), columns=list(columns)).astype(str)
    frame["y"] = ["0", "1"] * 20
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        result = apply_contract(frame, use_case)
    assert len(result.kept) == 40 and result.kept["c299"].dtype == np.float64


def test_a_decimal_comma_column_reads_commas_as_the_decimal_point(write_csv, toy_use_case):
    """A European export writes 2.904 kg as '2,904'; with `strip: ","` (all the contract could say) ingest read
    2904 beside '3' read as 3: a column silently out by x1000. `decimal: ","` reads it, and leaves '.' columns as
    they were."""
    lines = ["id;weight;price;label", "a1;2,904;2.5;no", "a2;3;1.25;yes", "a3;1.234,5;3;no", "a4;1 234,5;4;yes",
             "a5;-0,5;5;no", "a6;;6;yes", "a7;2.5;7;no", "a8;1.2345;8;yes", "a9;€ 12,30;9;no", "b1;0.500;1;no"]
    use_case = parse_use_case({
        "name": "euro", "task": "binary", "data": {"path": str(write_csv("\n".join(lines) + "\n")), "separator": ";"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]}, "id_columns": ["id"],
        "costs": {"false_negative": 5, "false_positive": 1},
        "columns": {"id": {"type": "string"}, "price": {"type": "number"},
                    "weight": {"type": "number", "nullable": True, "decimal": ",", "strip": "€"}}})
    result = apply_contract(read_use_case_table(use_case).frame, use_case)
    assert result.kept["weight"].tolist()[:5] == [2.904, 3.0, 1234.5, 1234.5, -0.5]
    assert np.isnan(result.kept["weight"].iloc[5]) and result.kept["weight"].iloc[6] == 12.3
    assert result.kept["price"].tolist()[:2] == [2.5, 1.25]  # the default decimal '.' is unchanged
    # A '.' that groups no thousands is no number's with decimal ',': neither 2.5 nor 25, but quarantined.
    assert dict(zip(result.quarantined[ROW_COLUMN], result.quarantined[REASON_COLUMN])) == {
        6: "weight: '2.5' is not a number written with decimal ','",
        7: "weight: '1.2345' is not a number written with decimal ','",
        9: "weight: '0.500' is not a number written with decimal ','"}  # no group of thousands starts with 0


@pytest.mark.parametrize(("column", "named"), [
    ({"type": "category", "decimal": ","}, "columns.plan: decimal applies to integer and number columns"),
    ({"type": "number", "decimal": ",", "strip": "$,"},
     "columns.plan: strip '$,' with decimal ',': ',' is this column's decimal mark"),
    ({"type": "number", "decimal": ";"}, "columns.plan.decimal"),
])
def test_a_decimal_option_that_cannot_apply_is_refused_naming_the_column(toy_use_case, column: dict, named: str):
    document = toy_use_case.model_dump(mode="json")
    document["columns"]["plan"] = column
    with pytest.raises(UseCaseError) as caught:
        parse_use_case(document)
    assert named in str(caught.value)
