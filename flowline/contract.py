"""Reading raw tables and holding them to a use case's data contract.

Rows that break the contract are not dropped: they go to a quarantine table with the
reason, so that rows in = rows kept + rows quarantined, always.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from flowline import storage
from flowline.datasets import dataset_path
from flowline.quarantine import EXTRA_COLUMN, REASON_COLUMN, RESERVED_COLUMNS, ROW_COLUMN, join_surplus, split_lines
from flowline.use_case import ColumnSpec, UseCase

BINARY_SNIFF_BYTES = 8192  # a NUL byte this early means a binary file, not text
ENCODING_SNIFF_BYTES = 1 << 22  # the bytes reads_as_utf8 looks at: enough for accents to show, cheap to decode twice
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # how Excel's "Unicode Text" starts
FLOAT32_MAX = float(np.finfo(np.float32).max)  # the model computes in float32: the server refuses a number beyond
SEPARATORS = ",;\t|"  # the separators flowline init detects, and batch scoring recognises in a one-column header


class ContractError(ValueError):
    """The table as a whole cannot be used: unreadable, no rows, missing or repeated columns, too many bad rows."""


@dataclass(frozen=True)
class RawTable:
    """The rows as read, every CSV cell as text, indexed by row number (0 = the first row after the header).

    `malformed` holds the lines whose field count differs from the header's, already
    shaped as quarantine rows (the fields under the header's names in order, surplus
    ones in `_extra_fields`, the reason naming the line).
    """

    frame: pd.DataFrame
    source: str
    sha256: str
    malformed: pd.DataFrame
    utf8_misread_as: str | None = None  # the encoding a CSV that reads as UTF-8 was decoded with (reads_as_utf8)


@dataclass(frozen=True)
class ContractResult:
    kept: pd.DataFrame
    quarantined: pd.DataFrame
    rows_in: int

    @property
    def bad_fraction(self) -> float:
        return len(self.quarantined) / self.rows_in if self.rows_in else 0.0


def resolve_source(use_case: UseCase, override: str = "") -> str:
    """The path or URL to read: an explicit override, else the use case's dataset or path."""
    if override:
        return override
    if use_case.data.dataset:
        return str(dataset_path(use_case.data.dataset))
    return str(use_case.data.path)


def read_use_case_table(use_case: UseCase, override: str = "") -> RawTable:
    """The use case's source (or `override`) read with its data options: format, separator, encoding."""
    data = use_case.data
    return read_table(resolve_source(use_case, override), data.format, data.separator, data.encoding)


def read_table(source: str, file_format: str | None = None, separator: str = ",",
               encoding: str = "utf-8") -> RawTable:
    """Read CSV or Parquet from a path, an http(s) URL or s3://bucket/key, every CSV cell as text.

    Cells stay text so that the contract, not the parser, decides what a bad value is. A
    line with more or fewer fields than the header is not a reason to give up on the
    file: it goes to `malformed`. Raises ContractError for what no row can survive: bytes
    that are not text in `encoding`, a binary file, no header, no rows, a repeated column name.
    """
    return parse_table(read_bytes(source), source, file_format, separator, encoding)


def parse_table(payload: bytes, source: str, file_format: str | None = None, separator: str = ",",
                encoding: str = "utf-8") -> RawTable:
    """`read_table` on bytes already read from `source` (flowline init sniffs them first)."""
    file_format = file_format or ("parquet" if source.split("?")[0].endswith((".parquet", ".pq")) else "csv")
    encoding = file_encoding(payload, encoding)
    if file_format == "parquet":
        header, malformed = _parquet_columns(payload, source), []
    else:
        header, rows, malformed = _delimited_records(_decode(payload, source, encoding), source, separator)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ContractError(f"{source}: the header names column(s) {repeated} more than once; give each column "
                            f"its own name")
    if file_format == "parquet":
        frame = restored_index_as_columns(pd.read_parquet(io.BytesIO(payload)))
        frame.columns = [str(name) for name in frame.columns]
    else:
        index = [row for row, _ in rows] if malformed else pd.RangeIndex(len(rows))  # the source row numbers
        frame = pd.DataFrame([fields for _, fields in rows], columns=header, index=index, dtype=str)
    if frame.empty and not malformed:
        raise ContractError(f"{source} has a header ({len(frame.columns)} columns) but no rows")
    misread = file_format != "parquet" and reads_as_utf8(payload, encoding)
    return RawTable(frame=frame, source=source, sha256=hashlib.sha256(payload).hexdigest(),
                    malformed=malformed_rows(malformed, header, separator),
                    utf8_misread_as=encoding if misread else None)


def restored_index_as_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame read from Parquet with the named levels of the index pandas restored read back as column(s), first,
    and its rows numbered 0..n-1. A frame saved after `df.set_index("customerID")` holds its ids only in the
    index; left there, init would not draft them, ingest would number quarantined rows by them and scoring would
    not find them. A RangeIndex (named or not) or an unnamed index (a filtered frame's row labels) is not data:
    dropped, as batch scoring drops it."""
    named = [] if isinstance(frame.index, pd.RangeIndex) else [name for name in frame.index.names if name is not None]
    return (frame.reset_index(level=named) if named else frame).reset_index(drop=True)


def read_bytes(source: str) -> bytes:
    """The bytes of a local path, an http(s) URL or s3://bucket/key."""
    if storage.is_s3(source):
        return storage.read_bytes(source)
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=60) as response:
                return response.read()
        except (urllib.error.URLError, OSError) as error:  # HTTPError (404, 403, ...) is a URLError
            raise ContractError(f"data source {source} cannot be read: {error}") from None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"data source {source} does not exist")
    return path.read_bytes()


def _parquet_columns(payload: bytes, source: str) -> list[str]:
    """The column names in a Parquet file's schema, read before the data (pyarrow cannot read repeated names)."""
    try:
        return [str(name) for name in pq.ParquetFile(io.BytesIO(payload)).schema_arrow.names]
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ContractError(f"{source} is not a readable Parquet file: {error}") from None


def file_encoding(head: bytes, encoding: str) -> str:
    """The encoding a text file is read with: `encoding`, unless the file starts with UTF-8's byte-order mark, as
    Excel's "CSV UTF-8" does, which declares it UTF-8 (read as latin-1 its first column was named 'ï»¿customerID',
    and every row failed as missing a column, with no word of the encoding)."""
    return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else encoding


def _decode(payload: bytes, source: str, encoding: str) -> str:
    """The file's text; ContractError for a binary file or bytes that `encoding` cannot decode."""
    try:
        text = payload.decode(encoding)
    except UnicodeDecodeError as error:
        if payload.startswith(UTF16_BOMS):
            raise ContractError(f"{source} is utf-16 text (it starts with utf-16's byte-order mark): set "
                                f"data.encoding: utf-16 in the use case") from None
        if b"\x00" in payload[:BINARY_SNIFF_BYTES]:
            raise ContractError(f"{source} is a binary file, not a text table: give a CSV or Parquet file") from None
        raise ContractError(
            f"{source} is not {encoding} text: byte {error.start} ({payload[error.start:error.start + 1]!r}) "
            f"cannot be decoded. Set data.encoding in the use case to the file's encoding "
            f"(for Western European text exported from Excel: data.encoding: latin-1)") from None
    if "\x00" in text[:BINARY_SNIFF_BYTES]:
        raise ContractError(f"{source} is a binary file, not a text table: give a CSV or Parquet file")
    return text.removeprefix("\ufeff")


def reads_as_utf8(payload: bytes, encoding: str) -> bool:
    """Whether a file to be decoded as `encoding` (latin-1, cp1252) is UTF-8 text with accented letters.

    Decoding it as `encoding` does not fail (latin-1 decodes any byte) but garbles them, 'München' reading
    'MÃ¼nchen', and the rows holding them can be quarantined as values the contract does not know, with no word
    of the encoding. A genuine latin-1 file is nearly never valid UTF-8: its 'é' is the one byte 0xE9, which
    UTF-8 must follow with two continuation bytes (0x80-0xBF), not with the ASCII or the letters latin-1 text
    follows it with; and ASCII reads the same either way, so it is no sign.
    Only the first ENCODING_SNIFF_BYTES of `payload` are looked at: pass the file's bytes, or at least one more
    than that, so that a character cut at the end of the sample is told from one cut at the end of the file.
    """
    if codecs.lookup(encoding).name in ("utf-8", "utf-8-sig"):
        return False
    sample = payload[:ENCODING_SNIFF_BYTES]
    if sample.isascii() or b"\x00" in sample:  # a NUL: utf-16 or binary, whose bytes are no UTF-8 text
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(payload) <= ENCODING_SNIFF_BYTES)
    except UnicodeDecodeError:
        return False
    return True


def utf8_misread(encoding: str) -> str:
    """What reading UTF-8 text as `encoding` does, for the hint that names the fix."""
    garbled = "ü".encode("utf-8").decode(encoding, errors="replace")
    return (f"reads as UTF-8, not {encoding}: its accented letters read garbled ('ü' as {garbled!r}), and rows "
            f"holding them can be quarantined as values the contract does not know")


def _delimited_records(text: str, source: str, separator: str) -> tuple[list[str], list, list]:
    """The header, the (row number, fields) of well-formed rows, and the (row number, line, fields) of the others.

    A one-character separator is read as CSV (quotes included); `\\s+` splits on runs of
    whitespace, ignoring it at both ends of a line; any other separator is a regular
    expression. Blank lines are skipped.
    """
    try:
        records = [(line, fields) for line, fields in split_lines(text, separator) if fields]
    except csv.Error as error:
        raise ContractError(f"{source} is not a {separator!r}-separated table: {error}") from None
    if not records:
        raise ContractError(f"{source} is empty: it has no header and no rows")
    (_, header), *data = records
    rows, malformed = [], []
    for row, (line, fields) in enumerate(data):
        if len(fields) == len(header):
            rows.append((row, fields))
        else:
            malformed.append((row, line, fields))
    return header, rows, malformed


def malformed_rows(malformed: list, header: list[str], separator: str) -> pd.DataFrame:
    """Quarantine rows for (row number, line, fields) with the wrong number of fields: nothing of the line is lost."""
    rows = [{ROW_COLUMN: row, **dict(zip(header, fields)),
             EXTRA_COLUMN: join_surplus(fields[len(header):], separator) if len(fields) > len(header) else pd.NA,
             REASON_COLUMN: f"line {line}: {len(fields)} fields, but the header has {len(header)}"}
            for row, line, fields in malformed]
    return pd.DataFrame(rows, columns=[ROW_COLUMN, *header, EXTRA_COLUMN, REASON_COLUMN]).astype(
        {name: "string" for name in [*header, EXTRA_COLUMN, REASON_COLUMN]})


def as_text(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Text of each cell (stripped) and a mask of blank cells (empty, whitespace or null).

    Each distinct text is stripped once: a column of a large table holds few distinct values."""
    codes, distinct = pd.factorize(values.astype("string"))  # null: code -1
    stripped = np.array([text.strip() for text in distinct.to_numpy(dtype=object)] + [None], dtype=object)[codes]
    blank = (codes == -1) | (stripped == "")
    return pd.Series(pd.array(stripped, dtype="string"), index=values.index), pd.Series(blank, index=values.index)


def _numeric_column(name: str, values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        # Numbers already (a typed Parquet column): nothing to parse, and text only for the messages.
        parsed = values.astype("float64")
        blank, text = parsed.isna(), None
    elif _booleans(values):
        # True/False (a Parquet bool column, e.g. SeniorCitizen saved from pandas): 1/0, as numpy counts them;
        # as text, 'False' is not a number and every row would be quarantined.
        parsed = values.map({True: 1.0, False: 0.0}).astype("float64")
        blank, text = parsed.isna(), None
    else:
        text, blank = as_text(values)
        parsed = column_numbers(text.where(~blank), spec)
    reasons = pd.Series("", index=values.index, dtype=object)
    flagged = np.zeros(len(values), dtype=bool)  # a row keeps its first reason

    def flag(mask: pd.Series, problem: str, quoted: bool = True) -> None:
        mask = mask.to_numpy(dtype=bool) & ~flagged
        if mask.any():  # the messages are built for the flagged rows only: most rows are fine
            shown = text[mask] if text is not None else as_text(values[mask])[0]
            reasons[mask] = (f"{name}: '" + shown.fillna("") + "' " + problem) if quoted else problem
            flagged[mask] = True

    flag(~blank & parsed.isna(), "is not a number" if spec.decimal == "." else f"is not a number written with "
                                                                              f"decimal {spec.decimal!r}")
    flag(np.isinf(parsed), "is not a finite number")
    if spec.type == "integer":
        flag(parsed.notna() & (parsed != np.floor(parsed)), "is not an integer")
    if spec.min is not None:
        flag(parsed < spec.min, f"is below the minimum {spec.min:g}")
    if spec.max is not None:
        flag(parsed > spec.max, f"is above the maximum {spec.max:g}")
    if not spec.nullable:
        flag(blank, f"{name}: blank, but the column is not nullable", quoted=False)
    return parsed, reasons


def _booleans(values: pd.Series) -> bool:
    """Whether a column holds True/False: a bool or boolean dtype, or (pyarrow's reading of a bool Parquet column
    with nulls) an object column of Python or numpy bools and nulls. Text cells fail at the first value."""
    if pd.api.types.is_bool_dtype(values):
        return True
    if values.dtype != object:
        return False
    present = values.dropna()
    return bool(len(present)) and isinstance(present.iloc[0], (bool, np.bool_)) and bool(
        present.map(lambda value: isinstance(value, (bool, np.bool_))).all())


def without(text: pd.Series, characters: str) -> pd.Series:
    """`text` without any of `characters`, then stripped (a column's `strip`: "$1,234.50" with "$," reads 1234.50)."""
    return text.str.translate(str.maketrans("", "", characters)).str.strip()


# A column's `decimal: ","`: a '.' or a space between digits, before a group of exactly three, groups thousands.
DECIMAL_COMMA_GROUPING = r"(?<=\d)[.\s](?=\d{3}(?!\d))"
LEADING_ZERO_GROUP = r"\s*[-+]?0[.\s]\d"  # "0.500": a decimal point, not a group of thousands


def number_text(text: pd.Series, strip: str | None, decimal: str = ".") -> pd.Series:
    """Cells of a numeric column as numbers_from_text reads them: without the column's `strip` characters and,
    with decimal ',', without the '.' and spaces grouping thousands and with '.' for ',' ("1.234,5" -> "1234.5").
    There a cell left with a '.' is missing (NA), so not a number: "2.5" is read neither as 2.5 nor as 25, and
    "0.500" (no thousands group starts with 0) neither as 0.5 nor as 500."""
    if strip:
        text = without(text, strip)
    if decimal == ",":
        text = text.where(~text.str.match(LEADING_ZERO_GROUP).fillna(False))
        text = text.str.replace(DECIMAL_COMMA_GROUPING, "", regex=True)
        text = text.where(~text.str.contains(".", regex=False).fillna(False)).str.replace(",", ".", regex=False)
    return text


def column_numbers(text: pd.Series, spec: ColumnSpec) -> pd.Series:
    """The numbers of a numeric column's text cells as its contract writes them (its `strip` and `decimal`):
    how ingest, batch scoring and validate read a number from the data, and init checks what it drafts."""
    return numbers_from_text(number_text(text, spec.strip, spec.decimal))


# pandas 2.3's number parser overflows an exponent of 2**31 or more and crashes the process (a segfault), so
# "0e2147483648" in one cell would kill ingest, batch scoring or the drift monitor: such cells never reach it.
HUGE_EXPONENT = re.compile(r"[eE][+-]?\d{10}")
# What pandas and Python's float both read, and read alike, as a number: the quick path for one served value.
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,2})?", re.ASCII)


def numbers_from_text(values: pd.Series) -> pd.Series:
    """Cells to float64, NaN where one is missing or not a number: the parser ingest, batch scoring, serving and
    the drift monitor share. Text is read as pandas reads it ("1_0" and non-ASCII digits are not numbers, though
    Python's float reads them); numbers pass as they are."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    huge = values.map(lambda value: isinstance(value, str) and HUGE_EXPONENT.search(value) is not None)
    parsed = pd.to_numeric(values.where(~huge.astype(bool)), errors="coerce").astype("float64")
    unparsed = values.notna() & parsed.isna()
    parsed[unparsed] = values[unparsed].map(_overflow)  # "1e999": pandas gives up where Python gives inf
    return parsed


def number_from_text(text: str) -> float:
    """One value's `numbers_from_text` (a served request's number sent as text), surrounding blanks stripped."""
    text = text.strip()
    if PLAIN_NUMBER.fullmatch(text):
        return float(text)
    return float(numbers_from_text(pd.Series([text], dtype="string")).iloc[0])


def _overflow(text: object) -> float:
    """inf or -inf for text of a number too large for a float, else NaN."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return np.nan
    return value if np.isinf(value) else np.nan


def _datetime_column(name: str, values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series]:
    text, blank = as_text(values)
    parsed = parse_datetimes(text.where(~blank), spec.format)
    reasons = pd.Series("", index=values.index, dtype=object)
    unparsed = ~blank & parsed.isna()
    expected = spec.format or "ISO 8601"
    reasons[unparsed] = (f"{name}: '" + text[unparsed] + f"' is not a date ({expected})").astype(object)
    for outside, bound in out_of_range_dates(parsed, spec):
        reasons[outside] = (f"{name}: '" + text[outside] + f"' is {bound}").astype(object)
    if not spec.nullable:
        reasons[blank] = f"{name}: blank, but the column is not nullable"
    return parsed, reasons


def out_of_range_dates(parsed: pd.Series, spec: ColumnSpec) -> list[tuple[pd.Series, str]]:
    """Where parsed dates fall outside the column's `earliest` and `latest` days, each with what it is past."""
    found = []
    if spec.earliest is not None:
        found.append((parsed < pd.Timestamp(spec.earliest), f"before the earliest day {spec.earliest}"))
    if spec.latest is not None:
        day_after = pd.Timestamp(spec.latest) + pd.Timedelta(days=1)
        found.append((parsed >= day_after, f"after the latest day {spec.latest}"))
    return found


# An offset after a time of day ("04:59-05:00", "04:59:00.5Z"): a date alone ("2026-01-17") ends in digits too.
TIME_OFFSET = re.compile(r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")
COMPACT_FORMAT = re.compile(r"(%[YmdHMS])+")  # a date format of fixed-width numeric fields and no separators


def parse_datetimes(text: pd.Series, date_format: str | None) -> pd.Series:
    """Text to naive UTC datetime64[ns], NaT where it does not parse: the parser ingest and serving share.

    A time with an offset is converted to UTC; one without is taken as UTC. Without a format, the times with an
    offset and those without are parsed apart: pandas 2.3 read a time without one, after a row with '-05:00', at
    that offset (04:59 as 09:59 UTC in ingest and batch scoring, 04:59 UTC served one value at a time), so a
    score hung on its neighbours and on the chunk size (the train/serve audit).
    """
    if date_format:
        parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
        if COMPACT_FORMAT.fullmatch(date_format):  # pandas reads %Y%m%d's "199712" as 1997-01-02: no field can
            # be told from the next without its full width, so the text must have the format's length exactly
            width = len(datetime(2000, 1, 1).strftime(date_format))
            parsed[text.astype("string").str.len().ne(width).fillna(False).to_numpy(bool)] = pd.NaT
        return parsed.dt.tz_localize(None).astype("datetime64[ns]")
    offset = text.str.contains(TIME_OFFSET, na=False).to_numpy(dtype=bool)
    parsed = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    for part in (offset, ~offset):
        if part.any():
            read = pd.to_datetime(text[part], format="ISO8601", errors="coerce", utc=True)
            parsed[part] = read.dt.tz_localize(None).astype("datetime64[ns]")
    return parsed


def _text_column(name: str, values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series]:
    text, blank = as_text(values)
    reasons = pd.Series("", index=values.index, dtype=object)
    if spec.allowed is not None:
        unknown = ~blank & ~text.isin(spec.allowed)
        reasons[unknown] = (f"{name}: '" + text[unknown] + f"' is not one of {spec.allowed}").astype(object)
    if not spec.nullable:
        reasons[blank & (reasons == "")] = f"{name}: blank, but the column is not nullable"
    return text.where(~blank).astype(object), reasons


def _label_column(use_case: UseCase, values: pd.Series) -> tuple[pd.Series, pd.Series]:
    name = use_case.label.column
    if use_case.task == "regression":
        # A Tweedie loss cannot take a negative label: such rows break the contract here, naming the label.
        floor = 0.0 if use_case.tuning.objective == "tweedie" else None
        return _numeric_column(f"label {name}", values, ColumnSpec(type="number", min=floor))
    allowed = ColumnSpec(type="category", allowed=use_case.label.values)
    return _text_column(f"label {name}", values, allowed)


def apply_contract(frame: pd.DataFrame, use_case: UseCase, malformed: pd.DataFrame | None = None,
                   to_score: bool = False) -> ContractResult:
    """Split a raw table into typed rows that meet the contract and quarantined rows with reasons.

    `malformed` (RawTable.malformed) joins the quarantine and the count of rows in, in
    row order. A transaction log (`use_case.transactions`) has no label yet: the customer-rows step
    makes it. `to_score`: rows to score (batch scoring), which carry no label (one that is there is
    not read) and may repeat an id (a repeated row is scored the same way twice). Raises ContractError
    when required columns are missing, since no row could be checked.
    """
    has_label = use_case.transactions is None and not to_score
    # A quarantine or scores file fed back in carries the bookkeeping of its own pass: this pass writes its own.
    frame = frame.drop(columns=[name for name in RESERVED_COLUMNS if name in frame.columns])
    missing = missing_columns(frame, use_case, has_label)
    if missing:
        raise ContractError(
            f"use case {use_case.name!r}: the data has no column(s) {missing}; "
            f"it has {list(frame.columns)}"
        )
    columns: dict[str, pd.Series] = {}  # joined once: a column at a time fragments a wide frame
    reasons_by_column = []
    for name, spec in use_case.columns.items():
        check = _numeric_column if spec.is_numeric else _datetime_column if spec.type == "datetime" else _text_column
        columns[name], reasons = check(name, frame[name], spec)
        reasons_by_column.append(reasons)
    if has_label:
        columns[use_case.label.column], label_reasons = _label_column(use_case, frame[use_case.label.column])
        reasons_by_column.append(label_reasons)
    typed = pd.DataFrame(columns, index=frame.index)

    if use_case.id_columns and not to_score:
        duplicated = frame.duplicated(subset=use_case.id_columns, keep="first")
        duplicate_reason = pd.Series("", index=frame.index, dtype=object)
        duplicate_reason[duplicated] = f"duplicate id in {use_case.id_columns}"
        reasons_by_column.append(duplicate_reason)

    reasons = pd.Series("", index=frame.index, dtype=object)  # every line may be malformed, leaving no row
    by_column = pd.concat(reasons_by_column, axis=1)
    failing = (by_column != "").any(axis=1)
    if failing.any():  # joined only where there is something to join: most rows are fine
        reasons[failing] = by_column[failing].apply(lambda row: "; ".join(r for r in row if r), axis=1)
    bad = reasons != ""
    quarantined = frame.loc[bad].astype("string")
    quarantined.insert(0, ROW_COLUMN, quarantined.index)
    quarantined[EXTRA_COLUMN] = pd.Series(pd.NA, index=quarantined.index, dtype="string")
    quarantined[REASON_COLUMN] = reasons[bad].astype("string")
    if malformed is not None and len(malformed):
        parts = [part for part in (quarantined, malformed) if len(part)]
        quarantined = pd.concat(parts).sort_values(ROW_COLUMN, kind="stable")
    rows_in = len(frame) + (0 if malformed is None else len(malformed))
    return ContractResult(kept=typed.loc[~bad], quarantined=quarantined.reset_index(drop=True), rows_in=rows_in)


def enforce_bad_fraction(result: ContractResult, use_case: UseCase, quarantine: str = "",
                         quarantine_uri: str = "") -> None:
    """Fail clearly when more rows were quarantined than the use case tolerates: the reasons counted (without the
    cells' values), the commonest first, and where the quarantine written at `quarantine` (when given) can be read:
    a step's artifact URI (`quarantine_uri`) in object storage gets the file first (storage.keep_failed_output)."""
    if result.bad_fraction > use_case.max_bad_fraction:
        kept = storage.keep_failed_output(quarantine, quarantine_uri) if quarantine else ""
        where = f" The quarantine {kept} lists every row with its reason." if kept else ""
        raise ContractError(
            f"{len(result.quarantined)} of {result.rows_in} rows ({result.bad_fraction:.1%}) break the data "
            f"contract of use case {use_case.name!r}, above max_bad_fraction {use_case.max_bad_fraction:.1%}. "
            f"Reasons: {reason_counts(result.quarantined[REASON_COLUMN])}.{where}"
        )


def reason_counts(reasons: pd.Series, shown: int = 3) -> str:
    """The commonest reasons with their rows, e.g. "credit_amount: a value that is not a number (125 rows)".
    Without the cells' values or line numbers: the message reaches the append-only audit log, where an erasure
    could not remove a person's data."""
    return counted_reasons_text(count_reasons(reasons), shown)


def count_reasons(reasons: pd.Series) -> pd.Series:
    """Rows per reason, commonest first, the reasons without the cells' values or line numbers (`reason_counts`);
    batch scoring adds up those of its chunks."""
    generic = (reasons.str.split("; ").explode()
               .str.replace(r": '.*?' is not ", ": a value that is not ", regex=True)
               .str.replace(r"^line \d+: ", "a line: ", regex=True))
    return generic.value_counts()


def counted_reasons_text(counted: pd.Series, shown: int = 3) -> str:
    """`reason_counts` of reasons already counted (`count_reasons`)."""
    counted = counted.sort_values(ascending=False, kind="stable")
    parts = [f"{reason} ({count} row{'s' if count != 1 else ''})" for reason, count in counted.head(shown).items()]
    others = len(counted) - shown
    return "; ".join(parts) + (f"; and {others} other reason(s)" if others > 0 else "")


def declared_columns(use_case: UseCase, with_label: bool = True) -> list[str]:
    """The columns the contract names: its columns, and (`with_label`) the label unless a transaction log makes
    it later."""
    labelled = with_label and use_case.transactions is None
    return [*use_case.columns, *([use_case.label.column] if labelled else [])]


def missing_columns(frame: pd.DataFrame, use_case: UseCase, with_label: bool = True) -> list[str]:
    """Declared columns the data lacks."""
    return [name for name in declared_columns(use_case, with_label) if name not in frame.columns]


def undeclared_columns(frame: pd.DataFrame, use_case: UseCase) -> list[str]:
    """Columns in the data that the contract does not declare (neither in columns nor the label): never used."""
    declared = set(declared_columns(use_case))
    return [name for name in frame.columns if name not in declared]


def check_undeclared(undeclared: list[str], use_case: UseCase) -> None:
    """Apply the use case's `undeclared` setting: error fails naming them, warn prints one line, ignore is quiet."""
    if not undeclared or use_case.undeclared == "ignore":
        return
    message = (f"{len(undeclared)} column(s) in the data are not declared in the contract of use case "
               f"{use_case.name!r} and are not used: {undeclared}")
    if use_case.undeclared == "error":
        raise ContractError(f"{message}; declare them under columns, or set undeclared: warn or ignore")
    print(f"ingest: warning: {message}")


def check_encoding(raw: RawTable) -> None:
    """One line when the file reads as UTF-8 but was decoded as another encoding (reads_as_utf8): the rows it
    quarantines say only that a value is unknown, not why."""
    if raw.utf8_misread_as:
        print(f"ingest: warning: {raw.source} {utf8_misread(raw.utf8_misread_as)}: set data.encoding: utf-8 "
              f"in the use case")
