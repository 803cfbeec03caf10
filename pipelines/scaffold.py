"""`flowline init` and `flowline validate`: a use case drafted from its data, and a use case checked against it.

Init infers what the data already answers (column types, allowed values, blanks, ids,
the label's values and task, the time column) and writes a commented YAML that loads
and runs as it is; what only a person can decide (costs, gates) gets a default marked
`# review`. Validate loads a YAML, reads its data and applies the contract, and lists
every problem at once rather than the first.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import yaml

from flowline.contract import (
    REASON_COLUMN, SEPARATORS, UTF16_BOMS, ContractError, apply_contract, as_text, missing_columns, number_text,
    numbers_from_text, parse_datetimes, parse_table, read_bytes, read_use_case_table, undeclared_columns,
)
from flowline.datasets import DatasetError
from flowline.leakage import separating_columns
from flowline.quarantine import RESERVED_COLUMNS
from flowline.splitting import SplitError, label_counts, split_frame
from flowline.use_case import UseCase, UseCaseError
from flowline.use_case_loader import load_use_case

MAX_ALLOWED = 20  # a category with at most this many values lists them as `allowed`
MAX_CATEGORY_SHARE = 0.5  # a text column with more distinct values than this share of rows is free text
NUMBER_SHARE = 0.99  # a column whose cells are this share numbers is numeric: the others are typos to quarantine
MOSTLY_NUMBERS = 0.9  # below NUMBER_SHARE but this share numbers: two decimal marks, a note on how to read them
# A category whose cells are at least this share numbers gets a review note: a price column with a fifth of its
# cells corrupt was drafted as a 1,489-value category, target-encoded, with no word.
NUMBERS_NOTE_SHARE = 0.5
ID_SHARE = 0.99  # a column named like an id, with no blank and this share of distinct values, is an id with repeats
ID_NAME = re.compile(r"(?:^|_)(?:id|number|key|uuid)(?:$|_)")
# A number written for people: a currency sign, thousands grouped by commas, a percent sign ("$1,234.50", "12.5%").
FORMATTED_NUMBER = re.compile(r"(?:[-+]?[$€£¥][-+]?|[$€£¥]\s[-+]?|[-+]?)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s?%?",
                              re.ASCII)
FORMATTING = "$€£¥,%"
# The same with a decimal comma (`decimal: ","`, European exports): thousands grouped by '.' or spaces, a currency
# sign before or after ("1.234,50", "€ 12,30", "12,30 €", "1 234,5").
DECIMAL_COMMA_NUMBER = re.compile(r"(?:[-+]?[$€£¥][-+]?|[$€£¥]\s[-+]?|[-+]?)(?:\d{1,3}(?:[.\s\u00a0\u202f]\d{3})+|\d+)"
                                  r"(?:,\d+)?(?:[\s\u00a0\u202f]?[$€£¥])?\s?%?", re.ASCII)
DECIMAL_COMMA = re.compile(r"\d,\d")  # a cell a decimal comma could be in
NOT_THOUSANDS = r"(?:\d{1,2}|\d{4,})(?!\d)"  # after a mark, digits no thousands group is: "2,5", "1.25", "0,0625"
# The header a saved DataFrame index gets (pandas writes "" and reads it back as "Unnamed: 0").
INDEX_NAME = re.compile(r"(?:|unnamed: ?\d+|index|level_0)", re.IGNORECASE)
LABEL_NAMES = ("label", "target", "class", "y", "outcome")
POSITIVE_WORDS = {"1", "yes", "y", "true", "t", "positive"}
NEGATIVE_WORDS = {"0", "no", "n", "false", "f", "negative"}


class ScaffoldError(ValueError):
    """The data cannot be drafted into a use case (for example, a label of three or more text values)."""


@dataclass(frozen=True)
class Column:
    """What init inferred about one column, and why (the YAML comment)."""

    name: str
    spec: dict
    note: str = ""
    is_id: bool = False


@dataclass(frozen=True)
class Draft:
    """Everything init inferred from one table, ready to render."""

    source: str
    shape: tuple[int, int]
    separator: str
    encoding: str
    label: str
    label_guessed: bool
    task: str
    label_spec: dict
    label_note: str
    columns: list[Column]
    output: str | None = None  # the YAML file it is written to, which names it and its data's path is relative to


def sniff_encoding(payload: bytes) -> str:
    """utf-16 when the bytes start with its byte-order mark (Excel's "Unicode Text"), utf-8 (a BOM included) when
    the whole file decodes as it, else latin-1, which decodes any byte."""
    if payload.startswith(UTF16_BOMS):
        return "utf-16"
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def sniff_separator(text: str) -> str:
    """The separator of a delimited text: csv.Sniffer on its first lines, else the one splitting the header most."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters=SEPARATORS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        return max(SEPARATORS, key=header.count)


def snake(name: str) -> str:
    """customerID -> customer_id, Policy Number -> policy_number: for matching names like *id*."""
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _text(values: pd.Series) -> pd.Series:
    """Non-blank cells as stripped text (blank as the contract counts it)."""
    text, blank = as_text(values)
    return text[~blank]


# Dates written otherwise than ISO 8601, tried in this order: where day and month both read, the first wins.
DATE_FORMATS = ("%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M",
                "%d.%m.%Y %H:%M", "%m/%d/%y", "%d.%m.%y")


def infer_column(name: str, values: pd.Series, separator: str = ",") -> Column:
    """The contract entry for one column: its type, allowed values, nullable and impute; a review note where a
    column carries one value only, or `?`, which many public datasets write for a missing value. `separator` is
    the file's: in a ';'-separated file (Excel's in much of Europe) a ',' between digits is a decimal mark."""
    column = _inferred(name, values, separator)
    text = _text(values)
    notes = [column.note] if column.note else []
    if len(text) == len(values) and text.nunique() == 1 and not column.is_id:  # a blank would be a second value
        notes.append("review: one value in every row, which tells the model nothing")
    if len(values) and not len(text):
        notes.append("review: every cell is blank, which tells the model nothing"
                     + ("; an unnamed column, as trailing separators make: leave it out" if not name.strip() else ""))
    if (text == "?").any():
        notes.append(f"review: {int((text == '?').sum())} cell(s) are '?': if '?' marks a missing value, blank "
                     "those cells in the data")
    elif column.spec["type"] in ("category", "string") and len(text) and not column.is_id:
        mixed = _mixed_decimals_note(text)
        finite = numbers_from_text(text).abs().lt(float("inf"))
        if mixed:  # first: the note below would call the cells of the other mark missing values
            notes.append(mixed)
        elif finite.mean() >= NUMBERS_NOTE_SHARE:  # too many others to quarantine as typos
            shown = ", ".join(repr(value) for value in text[~finite].value_counts().index[:3])
            notes.append(f"review: {finite.mean():.0%} of its cells are numbers, read as categories because of the "
                         f"others ({shown}): if they mark a missing value, blank those cells in the data, and it is "
                         f"read as a number")
    return replace(column, note="; ".join(notes))


def _mixed_decimals_note(text: pd.Series) -> str:
    """The review note of a text column whose cells are nearly all numbers once each is read with its own decimal
    mark, ',' in some ('12,30') and '.' in others ('2.5'), as a hand-edited sheet's export writes them; "" for any
    other column. No one mark reads such a column, and init does not guess one per cell: beside '2.5', '1,234' may
    be 1.234 or 1234. The data must settle it, so the column stays text and the note says how to make it a number.
    Each distinct value is read once, in the order the data first writes it."""
    counts = text.value_counts(sort=False)
    values = pd.Series(counts.index, dtype="string")
    cells = counts.to_numpy(dtype="int64")
    point = numbers_from_text(values).abs().lt(float("inf")).to_numpy()
    comma = numbers_from_text(number_text(values, None, ",")).abs().lt(float("inf")).to_numpy()
    commas, points = comma & ~point, point & ~comma  # cells only that mark reads ('7', '1.234' read with either)
    if cells[point | comma].sum() < MOSTLY_NUMBERS * cells.sum() or not commas.any() or not points.any():
        return ""
    note = (f"review: numbers written with two decimal marks, ',' in {cells[commas].sum()} cell(s) "
            f"({', '.join(repr(v) for v in values[commas].iloc[:2])}) and '.' in {cells[points].sum()} "
            f"({', '.join(repr(v) for v in values[points].iloc[:2])}), so no one mark reads them and they "
            "stay text: fix the export so that every cell writes one mark, then declare "
            "{type: number, decimal: \",\"} or {type: number}")
    others = ~(point | comma)
    if others.any():
        note += (f"; {cells[others].sum()} other cell(s) are not numbers "
                 f"({', '.join(repr(v) for v in values[others].iloc[:3])}): blank them if they mark a missing value")
    return note


def _inferred(name: str, values: pd.Series, separator: str = ",") -> Column:
    text = _text(values)
    blanks = len(values) - len(text)
    spec: dict = {"nullable": True} if blanks else {}
    unique = text.nunique()
    if not blanks and unique == len(text) and ID_NAME.search(snake(name)):
        return Column(name, {"type": "string", **spec}, "unique per row: proposed as an id", is_id=True)
    if not blanks and len(text) and INDEX_NAME.fullmatch(name.strip()) and _row_labels(text):
        return Column(name, {"type": "string"}, "review: a saved DataFrame index: kept out of the features as an "
                      "id, since a file's order can follow its label", is_id=True)
    read, numbers, strip, decimal = text, numbers_from_text(text), "", "."
    if len(text) and numbers.abs().lt(float("inf")).mean() < NUMBER_SHARE:  # not plain numbers: written for people?
        decimal = decimal_mark(text, separator)
        strip = _formatting(text, decimal)
        if strip or decimal != ".":
            read = number_text(text, strip or None, decimal)  # as the contract drafted will read it
            numbers = numbers_from_text(read)
    finite = numbers.abs().lt(float("inf"))
    if len(text) and finite.mean() >= NUMBER_SHARE:
        parsed, typed = numbers[finite], read[finite]
        whole = (parsed == parsed.round()).all() and not typed.str.contains(r"[.eE]").any()
        spec = {"type": "integer" if whole else "number", **spec, **({"strip": strip} if strip else {}),
                **({"decimal": decimal} if decimal != "." else {})}
        notes = [_decimal_note(text, separator)] if decimal != "." else []
        notes += [_strip_note(text, strip, separator)] if strip else []
        notes += [f"{blanks} blank, filled with the median"] if blanks else []
        if blanks:
            spec["impute"] = "median"
        if not finite.all():
            shown = ", ".join(repr(value) for value in text[~finite].unique()[:3])
            notes.append(f"review: {int((~finite).sum())} cell(s) are not numbers ({shown}): their rows are "
                         "quarantined")
        return Column(name, spec, "; ".join(notes))
    if len(text) and parse_datetimes(text, None).notna().all():
        return Column(name, {"type": "datetime", **spec}, "dates (ISO 8601)")
    formats = [form for form in DATE_FORMATS if len(text) and parse_datetimes(text, form).notna().all()]
    if formats:
        ambiguous = "; review: day and month could be either way round" if len(formats) > 1 else ""
        return Column(name, {"type": "datetime", "format": formats[0], **spec}, f"dates ({formats[0]}){ambiguous}")
    if unique > max(MAX_ALLOWED, MAX_CATEGORY_SHARE * len(text)):
        if ID_NAME.search(snake(name)) and not blanks and unique >= ID_SHARE * len(text):  # a few repeats
            return Column(name, {"type": "string"}, f"review: named like an id, {unique} distinct values in "
                          f"{len(text)} rows: proposed as an id; ingest quarantines the repeated ones", is_id=True)
        return Column(name, {"type": "string", **spec}, f"review: free text, {unique} distinct values: the model "
                      "reads it (target-encoded); list it in id_columns to keep it out")
    spec = {"type": "category", **spec}
    if unique <= MAX_ALLOWED:
        spec["allowed"] = sorted(text.unique())
    return Column(name, spec, f"{unique} values" + (f", {blanks} blank" if blanks else ""))


def _row_labels(text: pd.Series) -> bool:
    """The cells are whole numbers, each once: a saved DataFrame's row labels (0, 1, 2, ..., or what is left
    of them after filtering or shuffling), not a measurement."""
    numbers = numbers_from_text(text)
    return bool(numbers.notna().all() and (numbers >= 0).all() and (numbers == numbers.round()).all()
                and numbers.is_unique)


def _strip_note(text: pd.Series, strip: str, separator: str = ",") -> str:
    """The review note of a column read with `strip`, warning where only some cells carry a percent sign, and
    where ',' is stripped from a ';'-separated file, whose ',' may be a decimal mark."""
    note = f"review: numbers written with {', '.join(repr(c) for c in strip)}: removed before reading"
    percent = int(text.str.contains("%", regex=False).sum())
    if "%" in strip and percent < len(text):
        note += f"; only {percent} of {len(text)} cells carry '%': check that they share a scale"
    if "," in strip and separator == ";":
        note += ("; in a ';'-separated file ',' could be a decimal mark: if so, write decimal: \",\" and take ',' "
                 "out of strip")
    return note


def _decimal_note(text: pd.Series, separator: str) -> str:
    """The review note of a column drafted with `decimal: ","`, showing how one of its cells reads."""
    example = text[text.str.contains(DECIMAL_COMMA.pattern, regex=True).fillna(False)].iloc[0]
    value = numbers_from_text(number_text(pd.Series([example], dtype="string"), _formatting(
        pd.Series([example], dtype="string"), ",") or None, ",")).iloc[0]
    if text.str.contains("," + NOT_THOUSANDS, regex=True).fillna(False).any():  # "29,85": no thousands group
        return f"review: ',' read as the decimal mark: {example!r} is {value:g}"
    return (f"review: ',' read as the decimal mark, as the file is ';'-separated: {example!r} is {value:g}; if ',' "
            "groups thousands here, write strip: \",\" instead of decimal")


def decimal_mark(text: pd.Series, separator: str) -> str:
    """',' where the cells are numbers written with a decimal comma (some have a ',' between digits, nearly all
    read so, and none has a '.' before decimals, which would make ',' a thousands separator) and that comma is
    one: the file is ';'-separated, or some ',' is followed by other than three digits ("29,85"); else '.'.
    "1,234" in a ','-separated file stays thousands, as `_formatting` reads it."""
    if not len(text) or not text.str.contains(DECIMAL_COMMA.pattern, regex=True).fillna(False).any():
        return "."
    written = text.str.fullmatch(DECIMAL_COMMA_NUMBER.pattern, flags=DECIMAL_COMMA_NUMBER.flags).fillna(False)
    if written.mean() < NUMBER_SHARE or text.str.contains(r"\." + NOT_THOUSANDS, regex=True).fillna(False).any():
        return "."
    unambiguous = text[written].str.contains("," + NOT_THOUSANDS, regex=True).fillna(False).any()
    return "," if separator == ";" or unambiguous else "."


def _formatting(text: pd.Series, decimal: str = ".") -> str:
    """The currency, grouping and percent characters a column of numbers written for people uses ("" if it is
    not one: such cells must be nearly all of it, and some must carry them). With decimal ',' the grouping marks
    ('.' and spaces) are the contract's to remove, and ',' is the number's: only currency and percent signs."""
    if not len(text):
        return ""
    pattern, characters = (FORMATTED_NUMBER, FORMATTING) if decimal == "." else \
        (DECIMAL_COMMA_NUMBER, FORMATTING.replace(",", ""))
    formatted = text.str.fullmatch(pattern.pattern, flags=pattern.flags).fillna(False)
    carrying = text.str.contains(f"[{re.escape(characters)}]", regex=True).fillna(False)
    if formatted.mean() < NUMBER_SHARE or not (formatted & carrying).any():
        return ""
    used = set("".join(text[formatted & carrying].unique()))
    return "".join(c for c in characters if c in used)


def guess_label(frame: pd.DataFrame) -> str:
    """A column named like a label (label, target, class, y, outcome), else the last column."""
    named = [name for name in frame.columns if snake(name) in LABEL_NAMES]
    return named[0] if named else frame.columns[-1]


def infer_label(values: pd.Series, separator: str = ",") -> tuple[str, dict, str]:
    """The task, the label's YAML entries and a note: binary for two values, regression for many numbers."""
    text = _text(values)
    counts = text.value_counts()
    if len(counts) == 2:
        low, high = sorted(counts.index, key=lambda value: value.lower() in POSITIVE_WORDS)
        yes_no = low.lower() in NEGATIVE_WORDS and high.lower() in POSITIVE_WORDS
        positive = high if yes_no else counts.index[-1]
        why = "the value meaning yes" if yes_no else "the rarer value"
        return "binary", {"positive": positive, "values": sorted(counts.index)}, \
            f"binary: two values; positive is {why} ({counts[positive]} of {len(text)} rows)"
    numbers = numbers_from_text(text)
    if len(counts) > 2 and numbers.notna().all():
        if len(counts) <= MAX_ALLOWED and (numbers == numbers.round()).all():
            shown = ", ".join(map(str, counts.index[:5]))
            return "regression", {}, (f"regression: only {len(counts)} distinct whole numbers ({shown}); if they "
                                      "are classes, not amounts, map them to two values: flowline predicts two "
                                      "classes or a number")
        return "regression", {}, f"regression: {len(counts)} distinct numbers"
    shown = ", ".join(map(str, counts.index[:5]))
    if len(counts) > 2:
        _numbers_written_for_people(values.name, text, separator)
    raise ScaffoldError(
        f"cannot guess the task from label column {values.name!r}: it has {len(counts)} value(s) ({shown}); "
        f"flowline predicts a label of two values (binary) or a number (regression). Map it to two values, "
        f"or give another column with --label")


def _numbers_written_for_people(label: str, text: pd.Series, separator: str) -> None:
    """Refuse a label of numbers written for people ("$1,889.50", "29,85") saying so: a feature reads them with
    `strip` or `decimal`, but a label takes neither, so the data must write them plainly."""
    decimal = decimal_mark(text, separator)
    strip = _formatting(text, decimal)
    if not strip and decimal == ".":
        return
    numbers = numbers_from_text(number_text(text, strip or None, decimal))
    if numbers.abs().lt(float("inf")).mean() < NUMBER_SHARE:
        return
    written = " and ".join(filter(None, [f"with {', '.join(repr(c) for c in strip)}" if strip else "",
                                         "with a decimal comma" if decimal == "," else ""]))
    example = text[text.str.contains(f"[{re.escape(strip + decimal)}]", regex=True).fillna(False)].iloc[0]
    raise ScaffoldError(
        f"label column {label!r} holds numbers written {written} (such as {example!r}, the number "
        f"{numbers[text == example].iloc[0]:g}): a label takes no strip or decimal, so write them as plain numbers "
        f"in the data (1234.5) for a regression, or give another column with --label")


def slug(source: str) -> str:
    """A use-case name from the file name: adult.csv -> adult."""
    stem = re.sub(r"[^a-z0-9]+", "-", Path(source.split("?")[0]).stem.lower()).strip("-")
    return (stem if stem[:1].isalpha() else f"data-{stem}")[:41].rstrip("-") or "data"


def scalar(value) -> str:
    """A YAML scalar that reads back as the same string: plain when safe, else JSON-quoted."""
    text = str(value)
    plain = re.fullmatch(r"[A-Za-z_][\w .()/<>=+-]*", text) and not text.endswith(" ")
    return text if plain and yaml.safe_load(text) == text else json.dumps(text)


def flow(spec: dict) -> str:
    """A column spec as a one-line YAML mapping."""
    parts = [f"{key}: [{', '.join(scalar(v) for v in value)}]" if isinstance(value, list)
             else f"{key}: {scalar(value)}" if isinstance(value, str)
             else f"{key}: {str(value).lower() if isinstance(value, bool) else value}" for key, value in spec.items()]
    return "{" + ", ".join(parts) + "}"


def scaffold(source: str | os.PathLike, label: str | None = None, output: str | os.PathLike | None = None) -> str:
    """A complete, commented use-case YAML for the table at `source` (a path, http(s) URL or s3:// URI), to be
    written to `output` when given: the use case is named after that file, and a data file in its folder is
    given relative to it, as the loader reads a path."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source: a path, http(s) URL or s3:// URI of the table, got {type(source).__name__} (the "
                        "use case names its data file: write a DataFrame to one first, with to_csv)")
    source, output = os.fspath(source), None if output is None else os.fspath(output)
    payload = read_bytes(source)
    is_parquet = source.split("?")[0].endswith((".parquet", ".pq"))
    encoding = "utf-8" if is_parquet else sniff_encoding(payload)
    separator = "," if is_parquet else sniff_separator(payload[:1 << 16].decode(encoding, "replace"))
    frame = parse_table(payload, source, None, separator, encoding).frame
    label_guessed = label is None
    label = label or guess_label(frame)
    if label not in frame.columns:
        raise ScaffoldError(f"label {label!r} is not a column of {source}; its columns: {list(frame.columns)}")
    task, label_spec, label_note = infer_label(frame[label].rename(label), separator)
    if label in RESERVED_COLUMNS:
        raise ScaffoldError(f"label {label!r}: a name flowline keeps for its quarantines' bookkeeping; rename it "
                            "in the data")
    # A quarantine's bookkeeping columns (a quarantine fed back in) are not the data's: left undeclared.
    columns = one_time_column([infer_column(name, frame[name], separator) for name in frame.columns
                               if name != label and name not in RESERVED_COLUMNS])
    if all(column.is_id for column in columns):
        raise ScaffoldError(f"{source} has no column to learn {label!r} from: its other columns "
                            f"{[column.name for column in columns]} are ids")
    return render(Draft(source, frame.shape, separator, encoding, label, label_guessed, task, label_spec, label_note,
                        columns, output))


def one_time_column(columns: list[Column]) -> list[Column]:
    """The first column of dates stays datetime (the time column); the schema allows no other, so they stay text."""
    dates = [c.name for c in columns if c.spec["type"] == "datetime"]
    return [Column(c.name, {**{k: v for k, v in c.spec.items() if k != "format"}, "type": "string"},
                   "dates, kept as text: only the time column is parsed")
            if c.name in dates[1:] else c for c in columns]


def _data_lines(source: str, separator: str, encoding: str, output: str | None) -> list[str]:
    lines = ["data:", f"  path: {scalar(_data_path(source, output))}"]
    if separator != ",":
        lines.append(f"  separator: {json.dumps(separator)}  # detected")
    if encoding != "utf-8":
        lines.append(f"  encoding: {encoding}  # detected: the file is not utf-8")
    return lines


def _data_path(source: str, output: str | None) -> str:
    """The data as the YAML names it: a URL as given; a file in the YAML's folder (or below) relative to it, so
    that the folder can move; any other file by its absolute path."""
    if "://" in source:
        return source
    data = Path(source).resolve()
    folder = Path(output).resolve().parent if output is not None else None
    return str(data.relative_to(folder) if folder is not None and data.is_relative_to(folder) else data)


def _label_lines(label: str, guessed: bool, task: str, spec: dict) -> list[str]:
    lines = ["label:",
             f"  column: {scalar(label)}" + ("  # review: guessed; choose another with --label" if guessed else "")]
    if task == "binary":
        lines += [f"  positive: {scalar(spec['positive'])}  # review: the outcome to predict",
                  f"  values: [{', '.join(scalar(v) for v in spec['values'])}]"]
    return lines


def _decision_lines(task: str) -> list[str]:
    if task == "binary":
        return ["# review: a bar a model must clear before it is packaged.", "gates:", "  roc_auc: {min: 0.70}", "",
                "# review: what each error costs, in one currency unit; they set the decision threshold.",
                "costs:", "  false_negative: 5   # review: a positive case the model misses",
                "  false_positive: 1   # review: a negative case acted on needlessly"]
    return ["# review: a bar a model must clear before it is packaged.", "gates:", "  r2: {min: 0.10}"]


# Words of column names that usually hold a protected characteristic (age, sex, ethnicity, religion, family
# status, nationality, disability): init lists such columns, commented out, for the user to choose from.
SENSITIVE_WORDS = {"age", "sex", "gender", "race", "ethnic", "ethnicity", "religion", "marital", "nationality",
                   "native", "citizen", "disability", "disabled", "personal_status"}


def looks_sensitive(name: str) -> bool:
    """Whether a column's name has a SENSITIVE_WORDS word (PageValues has none; SeniorCitizen, native-country do)."""
    words = [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)]
    return bool(SENSITIVE_WORDS & {*words, *(f"{a}_{b}" for a, b in zip(words, words[1:]))})


def _governance_lines(draft: Draft) -> list[str]:
    """What the model card says the model is for and where it falls short, and (binary tasks) the columns that
    look like protected characteristics, commented out: measuring fairness on them adds the bias step's gates."""
    lines = ["intended_use: \"\"  # review: who acts on the predictions, and how (the model card shows it)",
             "limitations: []  # review: known limits of the data and the model (the model card lists them)"]
    found = [c.name for c in draft.columns if looks_sensitive(c.name) and not c.is_id and c.name != draft.label]
    if draft.task == "binary" and found:
        lines += [f"# sensitive_attributes: [{', '.join(scalar(name) for name in found)}]  # review: named like "
                  "protected characteristics; fairness is measured and gated on those listed"]
    return lines


def render(draft: Draft) -> str:
    """The YAML text: data, label and task, ids and time column, the contract, then gates and costs."""
    ids = [c.name for c in draft.columns if c.is_id]
    dates = [c.name for c in draft.columns if c.spec["type"] == "datetime"]
    rows, width = draft.shape
    lines = [f"# Drafted by `flowline init` from {draft.source} ({rows} rows, {width} columns).",
             "# Lines marked `review` are guesses or defaults: check them. `flowline validate` checks this file",
             "# against the data.",
             f"name: {slug(draft.output or draft.source)}  # review: runs, packages and `flowline serve NAME` use it",
             "description: \"\"  # review: what is predicted, for whom",
             *_governance_lines(draft),
             f"task: {draft.task}  # review: {draft.label_note}", "",
             *_data_lines(draft.source, draft.separator, draft.encoding, draft.output), "",
             *_label_lines(draft.label, draft.label_guessed, draft.task, draft.label_spec), ""]
    if ids:
        lines += ["# Unique per row and named like an id (or the row number): kept out of the features.",
                  f"id_columns: [{', '.join(scalar(name) for name in ids)}]", ""]
    if dates:
        lines += [f"time_column: {scalar(dates[0])}  # review: recognised as dates; time features come from it", ""]
    lines += ["# The data contract: rows that break it are quarantined with their reason.", "columns:"]
    lines += [f"  {scalar(c.name)}: {flow(c.spec)}" + (f"  # {c.note}" if c.note else "") for c in draft.columns]
    lines += ["", "max_bad_fraction: 0.05  # review: the share of rows that may break the contract",
              "undeclared: warn  # columns in the data but not above: warn, error or ignore", "",
              "split: {method: stratified, test_size: 0.2, valid_size: 0.2, seed: 42}  # review: a random split; "
              "method: time (with a time_column) for rows that follow each other in time", "",
              *_decision_lines(draft.task), ""]
    return "\n".join(lines)


def validate(path: str | Path) -> tuple[list[str], list[str]]:
    """Every problem of a use-case YAML against its data, and notes (rows quarantined within max_bad_fraction).

    Schema errors stop there (nothing else can be checked); otherwise missing and undeclared
    columns, label values absent from the data and rows breaking the contract are all reported.
    """
    try:
        use_case = load_use_case(path)
        raw = read_use_case_table(use_case)
    except (UseCaseError, ContractError, DatasetError, FileNotFoundError) as error:
        return [str(error)], []
    raw_frame, malformed = raw.frame, raw.malformed
    problems, notes = _column_problems(raw_frame, use_case)
    notes += _card_notes(use_case)
    # Without its label column the rows are still checked on their other columns (a misnamed label hid them all).
    unlabelled = use_case.transactions is None and use_case.label.column not in raw_frame.columns
    if not unlabelled:
        problems += _label_problems(raw_frame, use_case)
    present = {name: spec for name, spec in use_case.columns.items() if name in raw_frame.columns}
    ids = [name for name in use_case.id_columns if name in present]  # the rows are checked on what is there
    result = apply_contract(raw_frame, use_case.model_copy(update={"columns": present, "id_columns": ids}), malformed,
                            to_score=unlabelled)
    if not (missing_columns(raw_frame, use_case) or use_case.transactions):  # the rows as a run would see them
        split_problems, split_notes = _split_checks(result.kept, use_case)
        problems, notes = problems + split_problems, notes + split_notes
        notes += [f"column {column!r} alone separates the label (ROC-AUC {score:.3f} on its own): a value known only "
                  f"after the outcome gives it away, and the model is useless when it matters; if so, leave it out "
                  f"of columns" for column, score in separating_columns(result.kept, use_case).items()]
    counts = _reasons_per_column(result.quarantined[REASON_COLUMN])
    if not counts:
        return problems, notes
    summary = (f"{len(result.quarantined)} of {result.rows_in} rows ({result.bad_fraction:.1%}) break the "
               f"contract (max_bad_fraction {use_case.max_bad_fraction:.1%}): "
               + ", ".join(f"{where} {count}" for where, count in sorted(counts.items())))
    if result.bad_fraction > use_case.max_bad_fraction:
        return [*problems, summary], notes
    return problems, [*notes, summary]


FEW_TEST_POSITIVES = 20  # fewer in test, and its precision and recall move by 5 points or more a row


def _split_checks(kept: pd.DataFrame, use_case: UseCase) -> tuple[list[str], list[str]]:
    """What the split step would refuse (too few rows of a class to split and cross-validate), before a run; and
    a note when the test rows will hold so few positives that their metrics say little."""
    try:
        parts = split_frame(kept, use_case)
    except (SplitError, ValueError) as error:
        return [str(error)], []
    if use_case.task != "binary":
        return [], []
    positives = label_counts(parts["test"], use_case)[use_case.label.positive]
    return [], [f"the test rows will hold {positives} {use_case.label.positive!r} row(s): its precision, recall and "
                 f"gates will rest on so few that one row moves them by {100 / positives:.0f} points or more; give "
                 f"more rows, or a larger split.test_size"] if positives < FEW_TEST_POSITIVES else []


def _card_notes(use_case: UseCase) -> list[str]:
    """What the model card will lack: it shows the description under "Intended use" when only that is stated."""
    described = bool(use_case.description.strip())
    notes = [] if described else ["description is empty: the model card will say it is not stated"]
    if not use_case.intended_use.strip():
        notes.append("intended_use is empty: the model card will show the description in its place" if described
                     else "intended_use is empty: the model card will say it is not stated")
    return notes


def _column_problems(frame: pd.DataFrame, use_case: UseCase) -> tuple[list[str], list[str]]:
    """Missing columns (problems), and undeclared ones: problems with `undeclared: error`, notes with `warn`
    (a run goes on with a warning), nothing with `ignore`."""
    missing = missing_columns(frame, use_case)
    undeclared = undeclared_columns(frame, use_case) if use_case.undeclared != "ignore" else []
    said = [f"column(s) {undeclared} are in the data but not declared (declare them, or set undeclared: ignore)"]
    problems = [f"the data has no column(s) {missing}"] if missing else []
    if undeclared and use_case.undeclared == "error":
        return problems + said, []
    return problems, said if undeclared else []


def _label_problems(frame: pd.DataFrame, use_case: UseCase) -> list[str]:
    if use_case.task != "binary":
        return []
    found = set(_text(frame[use_case.label.column]))
    absent = [value for value in use_case.label.values if value not in found]
    return [f"label {use_case.label.column!r}: value(s) {absent} of label.values never occur in the data"] \
        if absent else []


def _reasons_per_column(reasons: pd.Series) -> dict[str, int]:
    """Quarantined rows per column named in their reasons (a malformed line counts under 'malformed lines')."""
    counts: dict[str, int] = {}
    for reason in reasons:
        names = {"malformed lines" if part.startswith("line ") else "duplicate ids" if part.startswith("duplicate id")
                 else f"column {part.split(':')[0]}" for part in str(reason).split("; ")}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    return counts
