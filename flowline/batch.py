"""Batch scoring: a whole table scored with one package, chunk by chunk, to Parquet.

`score_table` reads CSV or Parquet (a path, an http(s) URL or s3://bucket/key) in chunks of
`chunk_rows` rows, so memory follows the chunk size, not the input's: a CSV is parsed as it is
read, with ingest's own parser (quarantine.split_lines), and a Parquet file batch by batch; a remote
input is first copied to a temporary file (Parquet needs random access). Each chunk is held to the
package's contract with the checks ingest applies (contract.apply_contract; no label needed, and an
id may repeat), then transformed and scored by the package's Scorer, which decides exactly as the
model server does. Every row lands in one of two Parquet files, so rows in = rows scored + rows
quarantined:
- the scores: the input's row number (`_source_row`, as the quarantine numbers rows), the use case's
  id columns (as text), the prediction (binary: `probability`,
  `decision` and the `threshold` that decided it, as the server answers; regression: `prediction`
  and `segment` when the package has segments), `package_version` and `scored_at` (UTC);
- the quarantine (quarantine.py's format): each row's cells as text, its row number and its reason:
  a broken contract, a malformed line, or (as the server refuses them) a feature beyond float32's
  range or an answer that is not finite.
Values outside the training profile the package's FeatureSet records (its numbers' ranges and its
vocabularies: FeatureSet.out_of_profile, as the model server counts them) are scored and counted per column.
Entity features (recency, rolling windows) read a private in-memory online store seeded with the package's
history and then with every row of the input that meets the contract (a first read of the input): a row sees
its entity's earlier rows of the input, as a model server sees the rows it answered before, not only the
history frozen at training; earlier in time, wherever they are in the file, so the features do not depend on
the chunk size or the row order.

`score_customers` scores a transaction-log use case (CLV): the log is read whole, held to the log's
contract, and every customer who bought on or before `as_of` is scored from its features at that
date (customer_rows.features_at); each row names that date (`as_of`), and the summary counts the
customers left out because their first purchase came after it.

Both write to temporary files and move them into place only at the end: a failed run leaves no
partial output. `record` writes the run to the audit log.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import glob
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from flowline import audit, storage
from flowline.contract import (ENCODING_SNIFF_BYTES, FLOAT32_MAX, SEPARATORS, ContractError, apply_contract,
                               as_text, count_reasons, counted_reasons_text, file_encoding, malformed_rows,
                               missing_columns, read_use_case_table, reads_as_utf8, undeclared_columns)
from flowline.customer_rows import CUTOFF_COLUMN, daily_purchases, features_at
from flowline.features.feature_set import FeatureSet
from flowline.online_store import MemoryStore
from flowline.quarantine import EXTRA_COLUMN, REASON_COLUMN, ROW_COLUMN, split_lines
from flowline.scoring import Scorer
from flowline.use_case import UseCase

DEFAULT_CHUNK_ROWS = 50_000
VERSION_COLUMN = "package_version"
SCORED_AT_COLUMN = "scored_at"
AS_OF_COLUMN = "as_of"  # a transaction log's scores: the date its customers were valued at (ISO)
AUDIT_ACTION = "batch_scoring"
PARQUET_SUFFIXES = (".parquet", ".pq")


class BatchError(ValueError):
    """The input cannot be scored as a whole: unreadable, or not the table the package expects."""


@dataclass
class BatchSummary:
    """What a batch run did: the counts (rows_in, rows_scored, rows_quarantined, and for a binary model
    rows_flagged, the rows decided positive; a transaction log's run:
    transactions_in, transactions_quarantined, customers_scored) and the values out of profile per column.
    `reasons`: the quarantined rows per reason, without the cells' values (contract.count_reasons), for
    `enforce_bad_fraction`'s message; not part of the record."""

    package_version: str
    use_case: str
    input: str
    output: str
    quarantine: str
    counts: dict[str, int] = field(default_factory=dict)
    out_of_profile: dict[str, int] = field(default_factory=dict)
    as_of: Optional[str] = None
    seconds: float = 0.0
    blank_columns: list[str] = field(default_factory=list)  # the model's inputs blank in every row scored
    ignored_columns: list[str] = field(default_factory=list)  # the input's columns the contract does not declare
    utf8_misread_as: Optional[str] = None  # the encoding a text input that reads as UTF-8 was read with instead
    reasons: Counter = field(default_factory=Counter, repr=False)

    def as_dict(self) -> dict:
        return {name: value for name, value in asdict(self).items() if name != "reasons"}


# ---- reading

@contextlib.contextmanager
def local_input(source: str) -> Iterator[Path]:
    """A local file holding `source`: the path itself, or a temporary copy of an s3:// or http(s) object."""
    if not (storage.is_s3(source) or source.startswith(("http://", "https://"))):
        if not Path(source).is_file():
            raise FileNotFoundError(f"input {source} does not exist")
        yield Path(source)
        return
    with tempfile.TemporaryDirectory(prefix="flowline-batch-") as folder:
        copy = Path(folder) / (Path(source.split("?")[0]).name or "input")
        if storage.is_s3(source):
            storage.download_file(source, copy)
        else:
            try:
                with urllib.request.urlopen(source, timeout=60) as response, open(copy, "wb") as out:
                    shutil.copyfileobj(response, out)
            except (urllib.error.URLError, OSError) as error:
                raise BatchError(f"input {source} cannot be read: {error}") from None
        yield copy


def is_parquet(source: str, file_format: Optional[str] = None) -> bool:
    return (file_format or "").lower() == "parquet" or (
        not file_format and source.split("?")[0].lower().endswith(PARQUET_SUFFIXES))


def known_rows(source: str, file_format: Optional[str] = None) -> Optional[int]:
    """The rows of a local Parquet file, from its footer (a progress bar's total); None for anything else."""
    if not (is_parquet(source, file_format) and Path(source).is_file()):
        return None
    try:
        return pq.ParquetFile(source).metadata.num_rows
    except (OSError, ValueError):  # not Parquet after all: reading it will say so
        return None


def read_chunks(path: Path, source: str, parquet: bool, chunk_rows: int, separator: str = ",",
                encoding: str = "utf-8") -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(rows, malformed lines as quarantine rows) per chunk of at most `chunk_rows` rows; at least one chunk,
    empty for a table with no rows. Rows are indexed by their row number (0: the first after the header)."""
    if parquet:
        yield from _parquet_chunks(path, source, chunk_rows)
    else:
        yield from _text_chunks(path, source, chunk_rows, separator, encoding)


UNNAMED_INDEX = re.compile(r"__index_level_\d+__")  # how pandas names an unnamed index level in a Parquet file


def _parquet_chunks(path: Path, source: str, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise ContractError(f"{source} is not a readable Parquet file: {error}") from None
    # A frame saved by pandas keeps its index as columns (a RangeIndex only as metadata). A named level is data
    # (`df.set_index("customerID")` holds its ids there): read first, as contract.parse_table reads it for init
    # and ingest; an unnamed one (`__index_level_0__`, a filtered frame's row labels) is not.
    schema = parquet.schema_arrow
    index = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    named = [c for c in index if not UNNAMED_INDEX.fullmatch(c)]
    fields = [*named, *(name for name in schema.names if name not in index)]
    names = [str(name) for name in fields]
    start = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=fields):
        frame = batch.to_pandas(ignore_metadata=True)
        frame.columns, frame.index = names, pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame, malformed_rows([], names, ",")
    if start == 0:
        yield pd.DataFrame(columns=names, dtype=str), malformed_rows([], names, ",")


def _text_chunks(path: Path, source: str, chunk_rows: int, separator: str,
                 encoding: str) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Separated text, every cell as text, read as ingest reads it (lines of the wrong length are malformed)."""
    try:
        with open(path, encoding=encoding, newline="") as stream:
            if stream.read(1) != "\ufeff":  # a byte-order mark a codec leaves (utf-16-le) is not part of the header
                stream.seek(0)
            records = ((line, fields) for line, fields in split_lines(stream, separator) if fields)
            first = next(records, None)
            if first is None:
                raise ContractError(f"{source} is empty: it has no header and no rows")
            header = first[1]
            repeated = sorted({name for name in header if header.count(name) > 1})
            if repeated:
                raise ContractError(f"{source}: the header names column(s) {repeated} more than once")
            rows, malformed, number, sent = [], [], 0, False
            for line, fields in records:
                if len(fields) == len(header):
                    rows.append((number, fields))
                else:
                    malformed.append((number, line, fields))
                number += 1
                if len(rows) + len(malformed) == chunk_rows:
                    yield _text_frame(rows, header), malformed_rows(malformed, header, separator)
                    rows, malformed, sent = [], [], True
            if rows or malformed or not sent:
                yield _text_frame(rows, header), malformed_rows(malformed, header, separator)
    except UnicodeDecodeError as error:
        raise ContractError(f"{source} is not {encoding} text ({error.reason}): give the file's encoding "
                            "(flowline score --encoding; latin-1 for Western European text exported from Excel)"
                            ) from None
    except csv.Error as error:
        raise ContractError(f"{source} is not a {separator!r}-separated table: {error}") from None


def check_separator(header: list[str], source: str, use_case: UseCase, separator: str) -> None:
    """A BatchError saying which separator to pass when a text file's header reads as one column the contract
    lacks, whose name holds another separator (`customerID;gender;...` read with ','): the file was written
    with it, and the list of every missing column would not say so."""
    if len(header) != 1 or not missing_columns(pd.DataFrame(columns=header), use_case, with_label=False):
        return
    likely = max(SEPARATORS, key=lambda candidate: 0 if candidate == separator else header[0].count(candidate))
    if likely != separator and likely in header[0]:
        shown = header[0] if len(header[0]) <= 60 else header[0][:57] + "..."
        raise BatchError(f"{source}: its header reads as one column, {shown!r}, with separator {separator!r}; "
                         f"the file looks {likely!r}-separated: pass --separator {likely!r}")


def _text_frame(rows: list[tuple[int, list[str]]], header: list[str]) -> pd.DataFrame:
    return pd.DataFrame([fields for _, fields in rows], columns=header, index=[number for number, _ in rows],
                        dtype=str)


# ---- writing

@contextlib.contextmanager
def staged(output: str) -> Iterator[Path]:
    """A temporary path that becomes `output` (a path, or s3://bucket/key) only when the block succeeds.

    The temporary file beside `output` is locked (flock) while the block runs. A run killed outright (SIGKILL,
    the OOM killer) cannot remove its own, but its lock goes with it: the next run to the same output removes
    each such file it can lock, and leaves those of runs still going."""
    remote = storage.is_s3(output)
    folder = Path(tempfile.mkdtemp(prefix="flowline-batch-")) if remote else Path(output).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f".{Path(output).name}."
    if not remote:
        _remove_abandoned(folder, prefix)
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".new", dir=folder)
    fcntl.flock(handle, fcntl.LOCK_EX)  # held by this descriptor until the block ends
    partial = Path(name).with_suffix(".partial")
    os.replace(name, partial)  # in the sweep's sight only once locked
    try:
        yield partial
        if remote:
            storage.upload_file(partial, output)
        else:
            os.chmod(partial, storage.new_file_mode())  # as a file opened for writing would be, not mkstemp's 0600
            os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
        os.close(handle)
        if remote:
            shutil.rmtree(folder, ignore_errors=True)


def _remove_abandoned(folder: Path, prefix: str) -> None:
    """Remove `folder`'s `prefix`*.partial files that no run holds locked (`staged`)."""
    for partial in folder.glob(f"{glob.escape(prefix)}*.partial"):
        try:
            with open(partial, "rb") as held:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                partial.unlink()
        except OSError:  # a run still going holds it, it went meanwhile, or it is not ours to remove
            continue


def output_schema(scorer: Scorer, ids: list[str]) -> pa.Schema:
    """The scores' columns: the ids, the answer as the server names it, the version and the time."""
    answer: list[tuple[str, pa.DataType]]
    if scorer.is_binary:
        randomized = scorer.mitigation is not None and scorer.mitigation.randomized
        answer = [("probability", pa.float32()), ("decision", pa.string()),
                  *([] if randomized else [("threshold", pa.float32())])]
    else:
        answer = [("prediction", pa.float32()), *([("segment", pa.string())] if scorer.has_segments else [])]
    return pa.schema([*((column, pa.string()) for column in ids), *answer, (VERSION_COLUMN, pa.string()),
                      (SCORED_AT_COLUMN, pa.timestamp("ms", tz="UTC"))])


def quarantine_schema(header: list[str]) -> pa.Schema:
    return pa.schema([(ROW_COLUMN, pa.int64()), *((name, pa.string()) for name in header),
                      (EXTRA_COLUMN, pa.string()), (REASON_COLUMN, pa.string())])


def _table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


# ---- scoring

def answers(scorer: Scorer, x: np.ndarray, scores: np.ndarray, rows: pd.DataFrame) -> dict[str, object]:
    """The answer columns for scored `rows` (encoded as `x`), as the model server answers them."""
    if not scorer.is_binary:
        segment = {"segment": scorer.segments(scores)} if scorer.has_segments else {}
        return {"prediction": scores.astype(np.float32), **segment}
    positive = scorer.decide(scores, x, rows)
    thresholds = scorer.row_thresholds(len(scores), rows)
    return {"probability": scores.astype(np.float32), "decision": scorer.labels(positive),
            **({} if thresholds is None else {"threshold": thresholds})}


def _refused(frame: pd.DataFrame, index: pd.Index, reason: str) -> pd.DataFrame:
    """Quarantine rows for rows that met the contract but cannot be answered, as the server refuses them."""
    rows = frame.loc[index].astype("string")
    rows.insert(0, ROW_COLUMN, index)
    rows[EXTRA_COLUMN] = pd.Series(pd.NA, index=rows.index, dtype="string")
    rows[REASON_COLUMN] = pd.Series(reason, index=rows.index, dtype="string")
    return rows


def entity_state(scorer: Scorer, chunks: Callable[[], Iterator[tuple[pd.DataFrame, pd.DataFrame]]]
                 ) -> tuple[FeatureSet, Optional[MemoryStore]]:
    """The FeatureSet to score with, and the store its entity features read (None without entity features):
    in memory, private to this run, seeded with the package's history and then with every row of the input
    that meets the contract (`chunks()` reads it once more). A row sees its entity's rows of the input that are
    earlier in time, wherever they are in the file: the features do not depend on the chunk size or the order.
    An input row with the time and amounts of an event its entity's history holds is that event (a backtest over
    the training period), not a second one, as the offline computation takes it (EntityHistory.new_events). A row
    with a number beyond float32's range is no event: the server refuses it before storing it, so the rows after
    it see it on neither path (score_chunk quarantines it)."""
    feature_set = scorer.feature_set
    if not feature_set.entity_features:
        return feature_set, None
    store = MemoryStore()
    feature_set.seed(store)
    histories = {feature.name: feature.history for feature in feature_set.entity_features}
    for frame, malformed in chunks():
        kept = apply_contract(frame, scorer.use_case, malformed, to_score=True).kept
        numbers = kept.select_dtypes("number")
        kept = kept[~(numbers.abs() > FLOAT32_MAX).any(axis=1)]
        values = feature_set.frame_values(kept, checked=True)
        for definition, events in feature_set.entity_events(values).items():
            history = histories[definition]
            store.append_many(definition, {entity: history.new_events(entity, batch)
                                           for entity, batch in events.items()})
    return feature_set.online(store, rows_are_events=False), store


def score_chunk(scorer: Scorer, frame: pd.DataFrame, malformed: pd.DataFrame,
                entities: tuple[FeatureSet, Optional[MemoryStore]] | None = None,
                ) -> tuple[pd.DataFrame, pd.DataFrame, int, dict[str, int]]:
    """The scored rows, the quarantined rows (in row order), the rows in and the values out of profile.
    `entities` (`entity_state`): the FeatureSet whose entity features read the store that holds the input."""
    result = apply_contract(frame, scorer.use_case, malformed, to_score=True)
    feature_set, _ = entities or (scorer.feature_set, None)
    kept = result.kept
    values = feature_set.frame_values(kept, checked=True)
    x = feature_set.transform_values(values, len(kept))
    overflow = np.isinf(x).any(axis=1)  # refused before the model sees them, as the server refuses them
    refused = [_refused(frame, kept.index[rows], reason) for reason, rows in overflow_reasons(values, overflow).items()]
    if overflow.any():
        kept, x = kept[~overflow], x[~overflow]
    scores = scorer.model.predict(x)
    unanswered = ~np.isfinite(scores)
    refused.append(_refused(frame, kept.index[unanswered], "the model's answer for this row is not finite; its "
                                                           "values are too far outside what the model was trained on"))
    kept, x, scores = kept[~unanswered], x[~unanswered], scores[~unanswered]
    answered = np.flatnonzero(~overflow)[~unanswered]  # the rows scored, among the parsed ones
    answered_values = {column: v[answered] for column, v in values.items()}
    outside = feature_set.columns_out_of_profile(answered_values)
    scored = pd.DataFrame({ROW_COLUMN: kept.index.to_numpy(dtype=np.int64),
                           **{column: frame.loc[kept.index, column].astype("string")
                              for column in scorer.use_case.id_columns}}, index=kept.index)
    for name, answer in answers(scorer, x, scores, kept).items():
        scored[name] = answer
    scored[VERSION_COLUMN] = scorer.version
    scored[SCORED_AT_COLUMN] = pd.Timestamp.now(tz="UTC").floor("ms")
    parts = [part for part in (result.quarantined, *refused) if len(part)]
    quarantined = pd.concat(parts).sort_values(ROW_COLUMN, kind="stable") if parts else result.quarantined
    return scored, quarantined, result.rows_in, outside


def overflow_reasons(values: Mapping[str, np.ndarray], overflow: np.ndarray) -> dict[str, list[int]]:
    """Why each row with a feature beyond float32's range is refused, with the positions of the rows it refuses:
    the columns holding a number beyond that range, named as the server names them, else a computed feature."""
    numeric = {column: v for column, v in values.items() if np.issubdtype(np.asarray(v).dtype, np.number)}
    reasons: dict[str, list[int]] = {}
    for position in np.flatnonzero(overflow):
        beyond = [column for column, v in numeric.items() if abs(v[position]) > FLOAT32_MAX]
        reason = (f"{', '.join(beyond)}: a number beyond float32's range, which the model computes in" if beyond
                  else "a feature computed from this row is beyond float32's range")
        reasons.setdefault(reason, []).append(int(position))
    return reasons


def read_as(use_case: UseCase, separator: Optional[str] = None, encoding: Optional[str] = None) -> UseCase:
    """`use_case` reading a text file with `separator` and `encoding` where given, else its own (`data.separator`,
    `data.encoding`): the file being scored need not be written as the training data was. BatchError naming an
    unknown codec or separator, checked as the use case's own are."""
    data = use_case.data
    try:
        data = data.model_validate({**data.model_dump(), "separator": separator or data.separator,
                                    "encoding": encoding or data.encoding})
    except ValidationError as error:
        raise BatchError("; ".join(problem["msg"].removeprefix("Value error, ") for problem in error.errors())) \
            from None
    return use_case.model_copy(update={"data": data})


def score_table(scorer: Scorer, source: str, output: str, quarantine: str,
                chunk_rows: int = DEFAULT_CHUNK_ROWS, file_format: Optional[str] = None,
                on_chunk: Optional[Callable[[int], None]] = None, separator: Optional[str] = None,
                encoding: Optional[str] = None) -> BatchSummary:
    """Score every row of `source` into `output` and `quarantine` (Parquet); see the module docstring.
    `on_chunk` is called with the rows of each chunk scored (for a progress bar). A text table is read with
    `separator` and `encoding`, by default the use case's (`data.separator`, `data.encoding`): the file being
    scored need not be written as the training data was."""
    if chunk_rows < 1:
        raise BatchError(f"chunk_rows {chunk_rows}: give at least 1")
    started = time.perf_counter()
    data = read_as(scorer.use_case, separator, encoding).data
    summary = BatchSummary(scorer.version, scorer.use_case.name, source, output, quarantine,
                           counts={"rows_in": 0, "rows_scored": 0, "rows_quarantined": 0,
                                   **({"rows_flagged": 0} if scorer.is_binary else {})},
                           out_of_profile=dict.fromkeys(scorer.feature_set.profiled_columns, 0))
    # Each score names its input row, as the quarantine does: with no id columns it is the only way back.
    schema = pa.schema([(ROW_COLUMN, pa.int64()), *output_schema(scorer, scorer.use_case.id_columns)])
    with local_input(source) as path, staged(output) as scored_path, staged(quarantine) as quarantine_path, \
            contextlib.ExitStack() as writers:
        parquet = is_parquet(source, file_format)
        encoding = data.encoding
        if not parquet:
            with open(path, "rb") as head:  # one byte past the sample: reads_as_utf8 then knows the file goes on
                sample = head.read(ENCODING_SNIFF_BYTES + 1)
            encoding = file_encoding(sample, data.encoding)  # UTF-8's byte-order mark says what the file is
            if reads_as_utf8(sample, encoding):
                summary.utf8_misread_as = data.encoding  # latin-1 raises nothing: its rows read garbled

        def chunks() -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
            for frame, malformed in read_chunks(path, source, parquet, chunk_rows, data.separator, encoding):
                if not parquet:
                    check_separator(list(frame.columns), source, scorer.use_case, data.separator)
                yield frame, malformed

        entities = entity_state(scorer, chunks)  # with entity features, a first read of the input
        scores, held = writers.enter_context(pq.ParquetWriter(scored_path, schema)), None
        inputs, filled = [c for c in scorer.use_case.feature_columns if c in scorer.use_case.columns], set()
        for frame, malformed in chunks():
            if held is None:  # the server refuses a column it does not know; a file's are said once, not read
                summary.ignored_columns = undeclared_columns(frame, scorer.use_case)
            filled |= {column for column in inputs if column not in filled and column in frame.columns
                       and not as_text(frame[column])[1].all()}  # after the first chunk, nearly never read again
            scored, quarantined, rows_in, outside = score_chunk(scorer, frame, malformed, entities)
            if held is None:  # its columns are the input's, known from the first chunk (there is always one)
                held = writers.enter_context(pq.ParquetWriter(quarantine_path, quarantine_schema(list(frame.columns))))
            scores.write_table(_table(scored, schema))
            held.write_table(_table(quarantined, held.schema))
            _add(summary, rows_in, len(scored), len(quarantined), outside)
            if scorer.is_binary:  # the alerts a review team gets from this run
                summary.counts["rows_flagged"] += int((scored["decision"] == scorer.labels([True])[0]).sum())
            summary.reasons.update(count_reasons(quarantined[REASON_COLUMN]).to_dict())
            if on_chunk:
                on_chunk(rows_in)
    if summary.counts["rows_in"]:  # every row blank in a column the model reads: all scored on its training fill
        summary.blank_columns = [column for column in inputs if column not in filled]
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _add(summary: BatchSummary, rows_in: int, scored: int, quarantined: int, outside: dict[str, int]) -> None:
    counts = summary.counts
    counts["rows_in"] += rows_in
    counts["rows_scored"] += scored
    counts["rows_quarantined"] += quarantined
    for column, count in outside.items():
        summary.out_of_profile[column] += count


def score_customers(scorer: Scorer, log_use_case: UseCase, source: str, as_of: date, output: str,
                    quarantine: str) -> BatchSummary:
    """Score every customer of a transaction log as of `as_of`: the log is read whole and held to
    `log_use_case`'s contract (bad transactions go to `quarantine`); each customer who bought on or before
    `as_of` gets a row: the entity, `prediction`, `segment` (when the package has segments), the version
    and the time."""
    started = time.perf_counter()
    spec = log_use_case.transactions
    if spec is None:
        raise BatchError(f"use case {log_use_case.name!r} has no transactions: --as-of scores a transaction log")
    entity = spec.entity_column
    if scorer.use_case.id_columns != [entity]:
        raise BatchError(f"the package scores rows of {scorer.use_case.id_columns}, not customers of "
                         f"use case {log_use_case.name!r} ({entity})")
    raw = read_use_case_table(log_use_case, source)
    result = apply_contract(raw.frame, log_use_case, raw.malformed)
    rows = features_at(daily_purchases(result.kept, log_use_case), as_of).rename_axis(entity).reset_index()
    rows.insert(1, CUTOFF_COLUMN, as_of.isoformat())
    values = scorer.feature_set.frame_values(rows)
    x = scorer.feature_set.transform_values(values, len(rows))
    scores = scorer.model.predict(x)
    if not np.isfinite(scores).all():
        first = rows[entity].iloc[int(np.argwhere(~np.isfinite(scores))[0][0])]
        raise BatchError(f"customer {first}: the model's answer is not finite")
    scored = pd.DataFrame({entity: rows[entity].astype("string"), AS_OF_COLUMN: as_of.isoformat()})
    for name, answer in answers(scorer, x, scores, rows).items():
        scored[name] = answer
    scored[VERSION_COLUMN] = scorer.version
    scored[SCORED_AT_COLUMN] = pd.Timestamp.now(tz="UTC").floor("ms")
    with staged(output) as scored_path, staged(quarantine) as quarantine_path:
        pq.write_table(_table(scored, output_schema(scorer, [entity, AS_OF_COLUMN])), scored_path)
        header = list(raw.frame.columns)
        pq.write_table(_table(result.quarantined, quarantine_schema(header)), quarantine_path)
    return BatchSummary(scorer.version, log_use_case.name, source, output, quarantine,
                        counts={"transactions_in": result.rows_in, "transactions_quarantined": len(result.quarantined),
                                "customers_scored": len(scored),
                                # customers whose first purchase is after as_of: no value at a date they had not come
                                "customers_after_as_of": result.kept[entity].nunique() - len(scored)},
                        out_of_profile=scorer.feature_set.columns_out_of_profile(values), as_of=as_of.isoformat(),
                        seconds=round(time.perf_counter() - started, 3), utf8_misread_as=raw.utf8_misread_as,
                        reasons=Counter(count_reasons(result.quarantined[REASON_COLUMN]).to_dict()))


def enforce_bad_fraction(summary: BatchSummary, use_case: UseCase, quarantine_uri: str = "") -> None:
    """Fail, as ingest does (contract.enforce_bad_fraction), when more rows (a transaction log's run: transactions)
    were quarantined than `use_case`'s max_bad_fraction: a scheduled run that scored nothing, or little, must not
    pass for done. Called once the outputs are written and recorded, so that the quarantine is there to read and
    `flowline erase` finds it; a step's quarantine artifact URI (`quarantine_uri`) in object storage gets the file
    first (storage.keep_failed_output). A ContractError with the counts and the commonest reasons (without the
    values)."""
    counts = summary.counts
    what = "transactions" if "transactions_in" in counts else "rows"
    rows_in, quarantined = counts[f"{what}_in"], counts[f"{what}_quarantined"]
    if not rows_in or quarantined / rows_in <= use_case.max_bad_fraction:
        return
    reasons = counted_reasons_text(pd.Series(summary.reasons, dtype="int64"))
    raise ContractError(
        f"{quarantined:,} of {rows_in:,} {what} ({quarantined / rows_in:.1%}) were quarantined, above "
        f"max_bad_fraction {use_case.max_bad_fraction:.1%} of use case {use_case.name!r}. Reasons: {reasons}. "
        f"The quarantine {storage.keep_failed_output(summary.quarantine, quarantine_uri)} "
        "lists every row with its reason.")


def record(audit_log: str | Path, summary: BatchSummary) -> dict:
    """The run in the audit log (a file, or s3://bucket/prefix): version, input, outputs, counts."""
    return audit.append(audit_log, AUDIT_ACTION, summary.as_dict())
