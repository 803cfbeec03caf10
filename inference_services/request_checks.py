"""Checking inference requests against the use case's data contract, one record at a time.

Ingest checks whole tables (vectorised); a server sees a few records per request, so the
same rules are applied here per value. Every refusal is a `BadRequest` (HTTP 400) whose
message names the field, with a short `kind` used as the metrics label. Numbers must be
finite and within float32's range, which the model computes in. Messages show a client's
value only through `describe`: short scalars as sent, long strings cut, anything else by
its type, so that no message carries (or fails to print) arbitrary user data.

A record may also carry the use case's id columns: optional, never read by the model, checked
against their declared type when sent, never null or blank (an id joins an outcome to its answer),
and at most MAX_ID_CHARACTERS long, since the answer and the prediction log repeat them. So is the
entity of entity features, a key of the online store (a push of 100,000-character card ids grew it
by 118 MB).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import pandas as pd
from kserve.errors import InvalidInput

from flowline.contract import FLOAT32_MAX, number_from_text, out_of_range_dates, parse_datetimes
from flowline.use_case import ColumnSpec, UseCase

SHOWN_CHARACTERS = 40
MAX_ID_CHARACTERS = 200  # an id is repeated in the answer and the prediction log
V1_ROW, V2_ROW = "instances[{}]", "inputs, row {}"  # how an error names a request's row


class BadRequest(InvalidInput):
    """An input the server refuses: 400, with the field named in the message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def describe(value: Any) -> str:
    """A client's value for an error message: a short scalar as sent, a string cut to SHOWN_CHARACTERS,
    anything else by its JSON type; never the repr of a whole structure (which can be huge or nested
    deeper than repr can recurse)."""
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, str):
        return repr(value) if len(value) <= SHOWN_CHARACTERS else repr(value[:SHOWN_CHARACTERS]) + "..."
    return {dict: "an object", list: "a list"}.get(type(value), f"a {type(value).__name__}")


def clip(text: str, limit: int = 200) -> str:
    """An error text that may quote a client's bytes (a parser's message), cut to `limit` characters."""
    return text if len(text) <= limit else text[:limit] + "..."


def _missing_kind(value: Any) -> str | None:
    """Why a value counts as missing (as ingest counts blanks), or None when it is present."""
    if value is None:
        return "null"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, str) and not value.strip():
        return "blank"
    return None


class RecordChecker:
    """The contract of the columns a model reads (all required), of the id columns a record may carry beside
    them (`ids`, each optional), and of the other contract columns it may carry (`optional`: checked against
    their declared type, never read), compiled for per-record checks."""

    def __init__(self, use_case: UseCase, columns: Sequence[str], ids: Sequence[str] = (),
                 optional: Sequence[str] = (), missing_hint: str = "") -> None:
        """`missing_hint`: what a record missing a column is told besides (another way to ask)."""
        self.columns: dict[str, ColumnSpec] = {name: use_case.columns[name] for name in columns}
        self.ids: dict[str, ColumnSpec] = {name: use_case.columns[name] for name in ids if name not in self.columns}
        self.optional: dict[str, ColumnSpec] = {name: use_case.columns[name] for name in optional
                                                if name not in self.columns and name not in self.ids}
        self.known: dict[str, ColumnSpec] = {**self.columns, **self.ids, **self.optional}  # every column it takes
        self._allowed = {name: frozenset(spec.allowed) for name, spec in use_case.columns.items() if spec.allowed}
        entity = use_case.features.entity_column  # a key of the online store: capped as an id is
        self._keys = frozenset([entity]) & self.columns.keys() if entity else frozenset()
        plain = {name: plainly_valid(spec, self._allowed.get(name)) for name, spec in self.columns.items()}
        self._rules = [(name, spec, _within_id_length(plain[name]) if name in self._keys else plain[name])
                       for name, spec in self.columns.items()]
        self.missing_hint = missing_hint

    def check_batch(self, records: Any, where: str, max_batch: int) -> list[Mapping[str, Any]]:
        if not isinstance(records, list):
            raise BadRequest("malformed_request", f"{where}: expected a list of records, got {type(records).__name__}")
        if not records:
            raise BadRequest("empty_batch", f"{where}: the batch is empty")
        if len(records) > max_batch:
            raise BadRequest("batch_too_large", f"{where}: {len(records)} records, above the limit of {max_batch}")
        dates = self._dates_that_parse(records)
        for index, record in enumerate(records):
            self.check_record(record, f"{where}[{index}]", dates)
        return records

    def check_record(self, record: Any, where: str, dates: Optional[Mapping[str, frozenset]] = None) -> None:
        """Check one record; `dates`, a datetime column's texts known to parse (`_dates_that_parse`), skip its
        parse."""
        if not isinstance(record, dict):
            raise BadRequest("malformed_request", f"{where}: expected an object of column: value")
        for name, spec, plain in self._rules:
            if name not in record:
                raise BadRequest("missing_column", f"{where}: missing column {name!r}{self.missing_hint}")
            value = record[name]
            if not plain(value) and not (dates and type(value) is str and value in dates.get(name, ())):
                self.check_value(name, spec, value, where)
                if name in self._keys:
                    _check_id_length(f"{where}.{name}", value)
        known = len(self.columns)
        for name, spec in self.ids.items():
            if name in record:
                self.check_id(name, spec, record[name], where)
                known += 1
        if len(record) != known:
            for name, spec in self.optional.items():
                if name in record:
                    self.check_value(name, spec, record[name], where)
                    known += 1
        if len(record) != known:
            unknown = sorted(set(record) - self.known.keys())
            raise BadRequest("unknown_column", f"{where}: unknown column {describe(unknown[0])}")

    def _dates_that_parse(self, records: list) -> dict[str, frozenset]:
        """Per datetime column, the texts of `records` that parse as its dates, parsed at once: one text at a
        time took 1 ms (pandas), 16 s for an events push of 10,000 records."""
        dates = {}
        for name, spec, _ in self._rules:
            if spec.type == "datetime":
                texts = list({value for record in records if isinstance(record, dict)
                              and type(value := record.get(name)) is str and value.strip()})
                parsed = parse_datetimes(pd.Series([text.strip() for text in texts], dtype=object), spec.format)
                wrong = parsed.isna()
                for outside, _ in out_of_range_dates(parsed, spec):
                    wrong |= outside
                dates[name] = frozenset(text for text, refused in zip(texts, wrong) if not refused)
        return dates

    def check_id(self, name: str, spec: ColumnSpec, value: Any, where: str) -> None:
        """An id as sent: of its column's type, present (an empty id joins nothing), not too long."""
        field = f"{where}.{name}"
        missing = _missing_kind(value)
        if missing is not None:
            raise BadRequest(f"{missing.lower()}_not_allowed", f"{field}: {missing} is not allowed in an id; "
                                                                "leave the id out instead")
        if not spec.is_numeric and type(value) is int:  # a numeric id (pandas reads 1001 as a number) joins as its text
            value = str(value)
        self.check_value(name, spec, value, where)
        _check_id_length(field, value)

    def check_value(self, name: str, spec: ColumnSpec, value: Any, where: str) -> None:
        field = f"{where}.{name}"
        missing = _missing_kind(value)
        if missing is not None:
            if not spec.nullable:
                raise BadRequest(f"{missing.lower()}_not_allowed", f"{field}: {missing} is not allowed")
            return
        if spec.is_numeric:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise BadRequest("wrong_type", f"{field}: expected a number, got {describe(value)}")
            if isinstance(value, str):  # read as ingest reads a cell: a row the server takes, batch scoring takes
                number = number_from_text(value)
                if math.isnan(number):
                    raise BadRequest("wrong_type", f"{field}: expected a number, got {describe(value)}")
            else:
                try:
                    number = float(value)
                except OverflowError:  # an integer beyond any float: out of range below
                    number = math.inf
            if math.isnan(number):
                if not spec.nullable:
                    raise BadRequest("nan_not_allowed", f"{field}: NaN is not allowed")
                return
            if not abs(number) <= FLOAT32_MAX:  # infinite, or beyond what float32 (the model's input) holds
                kind = "out_of_range" if math.isfinite(number) else "not_finite"
                raise BadRequest(kind, f"{field}: expected a finite number within float32's range "
                                       f"(±{FLOAT32_MAX:.4g}), got {describe(value)}")
            if spec.type == "integer" and not number.is_integer():
                raise BadRequest("wrong_type", f"{field}: expected an integer, got {describe(value)}")
            if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
                raise BadRequest("out_of_range", f"{field}: {describe(value)} is outside [{spec.min}, {spec.max}]")
            return
        if isinstance(value, bool) and spec.type != "datetime":
            value = str(value)  # a JSON boolean reads as a boolean column's cells read in the data: True, False
        if not isinstance(value, str):
            raise BadRequest("wrong_type", f"{field}: expected a string, got {describe(value)}")
        if spec.type == "datetime":
            parsed = parse_datetimes(pd.Series([value.strip()]), spec.format)
            if parsed.isna().iloc[0]:
                raise BadRequest("wrong_type",
                                 f"{field}: {describe(value)} is not a date ({spec.format or 'ISO 8601'})")
            for outside, bound in out_of_range_dates(parsed, spec):
                if outside.iloc[0]:
                    raise BadRequest("out_of_range", f"{field}: {describe(value)} is {bound}")
            return
        allowed = self._allowed.get(name)
        if allowed is not None and value.strip() not in allowed:
            raise BadRequest("unknown_category", f"{field}: {describe(value)} is not one of {sorted(allowed)}")


def plainly_valid(spec: ColumnSpec, allowed: frozenset[str] | None) -> Callable[[Any], bool]:
    """A quick test that passes the common valid values of `spec`'s column (a number of the right type in
    range, a listed category as listed) and nothing `check_value` refuses; a value it does not pass gets
    the full check, which accepts it or names the problem. Most records are valid: they skip the full check."""
    if spec.is_numeric:
        low = -FLOAT32_MAX if spec.min is None else max(spec.min, -FLOAT32_MAX)
        high = FLOAT32_MAX if spec.max is None else min(spec.max, FLOAT32_MAX)
        if spec.type == "integer":  # NaN fails every comparison, so it always takes the full check
            return lambda value: (type(value) is int and low <= value <= high) or (
                type(value) is float and low <= value <= high and value.is_integer())
        return lambda value: (type(value) is float or type(value) is int) and low <= value <= high
    if spec.type == "datetime":
        return lambda value: False
    if allowed is not None:
        listed = frozenset(value for value in allowed if value and value == value.strip())
        return lambda value: type(value) is str and value in listed
    return lambda value: type(value) is str and bool(value.strip())


def _check_id_length(field: str, value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_ID_CHARACTERS:
        raise BadRequest("id_too_long", f"{field}: an id of {len(value)} characters, above the limit of "
                                        f"{MAX_ID_CHARACTERS}")


def _within_id_length(plain: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: plain(value) and (type(value) is not str or len(value) <= MAX_ID_CHARACTERS)


def request_checker(use_case: UseCase, input_columns: Sequence[str], decided_by: Sequence[str]) -> RecordChecker:
    """The checks of a request's records: the columns it must carry (`request_columns`), the ids it may, and the
    use case's other contract columns, which it may carry too (a time column the feature search left unread
    today may be read by the next version's model: a client sends the same rows to both)."""
    columns = request_columns(input_columns, decided_by)
    log = use_case.transaction_log  # a customer-rows package is asked by customer id too (customers_online.py)
    hint = (f" (or give {log.transactions.entity_column!r} alone, to be answered from the customer's transactions "
            "in the online store)" if log is not None else "")
    return RecordChecker(use_case, columns, use_case.id_columns,
                         [name for name in use_case.columns if name not in columns], hint)


def request_columns(input_columns: Sequence[str], decided_by: Sequence[str]) -> list[str]:
    """The columns a request carries: the FeatureSet's inputs, plus the columns the decision reads
    (a fairness mitigation's sensitive attributes) where the features do not read them."""
    return [*input_columns, *(column for column in decided_by if column not in input_columns)]


def ids_sent(record: Mapping[str, Any], columns: list[str]) -> dict[str, Any]:
    """The id columns `record` carries, with their values as sent: an answer repeats them beside each row."""
    return {column: record[column] for column in columns if column in record}
