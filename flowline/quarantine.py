"""The quarantine's format: what ingest writes for each row it sets aside, and how to read it back.

Ingest (components/ingest) writes it; erasure (flowline/erasure.py) reads it to remove a subject's
rows. A quarantined row keeps its cells under the header's names, its row number, its reason, and
for a line with more fields than the header the surplus ones in one text (`join_surplus`, which
`split_surplus` undoes exactly).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Iterator, TextIO

import pandas as pd

REASON_COLUMN = "_quarantine_reason"
ROW_COLUMN = "_source_row"
EXTRA_COLUMN = "_extra_fields"
RESERVED_COLUMNS = (ROW_COLUMN, EXTRA_COLUMN, REASON_COLUMN)  # a use case may not declare them
MALFORMED_REASON = r"line \d+: \d+ fields, but the header has \d+$"


def split_lines(text: str | TextIO, separator: str) -> Iterator[tuple[int, list[str]]]:
    """(line number of the record's first line, its fields) for every record of the text, or of a text
    stream (a file opened with newline="", read as it goes: batch scoring reads a large file this way).

    The first record is the header. A quoted field may span lines, but a later record that spans several
    lines and still has not the header's number of fields is a quote opened and never closed, which would
    swallow the lines after it into one field: its lines are read again one by one, each its own record,
    so that one stray quote costs one row, not the rest of the file."""
    if len(separator) == 1:
        yield from _csv_records(io.StringIO(text, newline="") if isinstance(text, str) else text, separator)
        return
    lines = text.splitlines() if isinstance(text, str) else (line.rstrip("\r\n") for line in text)
    if separator == r"\s+":
        yield from ((number, line.split()) for number, line in enumerate(lines, 1))
    else:
        pattern = re.compile(separator)
        yield from ((number, pattern.split(line) if line.strip() else []) for number, line in enumerate(lines, 1))


def _csv_records(stream: TextIO, separator: str) -> Iterator[tuple[int, list[str]]]:
    lines: list[str] = []  # the physical lines of the record being read

    def physical_lines() -> Iterator[str]:
        for line in stream:
            lines.append(line)
            yield line

    reader = csv.reader(physical_lines(), delimiter=separator)
    first, width = 1, None
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if len(lines) == 1:
                raise csv.Error(f"line {first}: {error}") from None
            fields = None  # a quote never closed, whose field ran past csv's size limit: the lines one by one
        if fields is not None and (width is None or len(lines) == 1 or len(fields) in (0, width)):
            if width is None and fields:
                width = len(fields)  # the header's
            yield first, fields
        else:
            for offset, line in enumerate(lines):
                yield first + offset, next(csv.reader([line.rstrip("\r\n")], delimiter=separator), [])
        first = reader.line_num + 1
        lines.clear()


def join_surplus(fields: list[str], separator: str) -> str:
    """A malformed line's surplus fields as one text: a CSV line for a one-character separator (quoted
    where a field holds it), else joined by single spaces."""
    if len(separator) != 1:
        return " ".join(fields)
    text = io.StringIO()
    csv.writer(text, delimiter=separator, lineterminator="").writerow(fields)
    return text.getvalue()


def split_surplus(text: str, separator: str) -> list[str]:
    """The fields `join_surplus` joined."""
    if len(separator) != 1:
        return text.split(" ")
    return next(csv.reader([text], delimiter=separator), [])


def line_fields(quarantine: pd.DataFrame, separator: str) -> pd.Series:
    """Every data field of each quarantined row, as a list: its cells and a malformed line's surplus fields
    split again (not the row number or the reason, which are not the subject's data)."""
    cells = [name for name in quarantine.columns if name not in (ROW_COLUMN, EXTRA_COLUMN, REASON_COLUMN)]

    def fields(row: pd.Series) -> list[str]:
        extra = row.get(EXTRA_COLUMN)
        surplus = split_surplus(extra, separator) if isinstance(extra, str) else []
        return [str(value).strip() for value in (*row[cells].dropna(), *surplus)]

    return quarantine.apply(fields, axis=1) if len(quarantine) else pd.Series([], dtype=object)


def malformed_lines(quarantine: pd.DataFrame) -> pd.Series:
    """Which quarantined rows are malformed lines, whose fields may sit under the wrong column names."""
    return quarantine[REASON_COLUMN].str.match(MALFORMED_REASON).fillna(False).astype(bool)
