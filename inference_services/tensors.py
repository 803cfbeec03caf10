"""Open Inference Protocol v2 tensors to what the servers work with: records of raw columns (one
tensor per column) or a matrix of encoded features. Every problem is a 400 naming the input."""

from __future__ import annotations

from typing import List

import numpy as np
from kserve.protocol.infer_type import InferInput

from flowline.inference_services.request_checks import BadRequest, RecordChecker, describe

INTEGER_DATATYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
NUMERIC_DATATYPES = frozenset({"FP16", "FP32", "FP64", *INTEGER_DATATYPES})
MATRIX_DATATYPES = frozenset({"FP32", "FP64"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def tensor_records(inputs: List[InferInput], checker: RecordChecker) -> list[dict]:
    """One v2 tensor per raw column (and per id or other contract column sent), to records {column: value}; 400 for unknown,
    missing or ragged inputs."""
    columns, specs = list(checker.columns), checker.known
    names = [tensor.name for tensor in inputs]
    seen: set[str] = set()
    for name in names:  # else the last tensor of a name would silently win
        if name in seen:
            raise BadRequest("repeated_input", f"inputs: input {describe(name)} is given more than once")
        seen.add(name)
    unknown = [name for name in names if name not in specs]
    if unknown:
        others = [*checker.ids, *checker.optional]
        ids = f" and optionally {others}" if others else ""
        raise BadRequest("unknown_column", f"inputs: unknown input {describe(unknown[0])}; "
                                           f"expected the raw columns {columns}{ids}")
    missing = [name for name in columns if name not in names]
    if missing:
        raise BadRequest("missing_column", f"inputs: missing input {missing[0]!r}")
    values = {tensor.name: _column_values(tensor, specs[tensor.name].is_numeric, tensor.name in checker.ids)
              for tensor in inputs}
    rows = {len(column) for column in values.values()}
    if len(rows) != 1:
        raise BadRequest("wrong_shape", f"inputs: tensors hold different numbers of rows {sorted(rows)}")
    return [dict(zip(values, row)) for row in zip(*values.values())]


def _shape_rows(tensor: InferInput) -> int:
    shape = tensor.shape
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise BadRequest("wrong_shape", f"input {describe(tensor.name)}: shape {list(shape)}, expected [N] or [N, 1]")
    return shape[0]


def _column_values(tensor: InferInput, numeric: bool, is_id: bool = False) -> list:
    """The values of a one-column tensor as Python scalars (str for BYTES). A numeric column may come as
    BYTES text: its values are then checked and converted as v1 does a JSON string ("42" is 42). A text id may
    come as integers, which it joins as text."""
    datatype = tensor.datatype
    if numeric and datatype not in NUMERIC_DATATYPES and datatype != "BYTES":
        raise BadRequest("wrong_type", f"input {describe(tensor.name)}: datatype {datatype}, "
                                       "expected a numeric type (FP32, FP64, INT64, ...) or BYTES text")
    text = ("BYTES", "BOOL", *INTEGER_DATATYPES) if is_id else ("BYTES", "BOOL")  # BOOL: a boolean column's values
    if not numeric and datatype not in text:
        raise BadRequest("wrong_type", f"input {describe(tensor.name)}: datatype {datatype}, expected BYTES")
    rows = _shape_rows(tensor)
    plain = plain_tensor_values(datatype, tensor.data, rows)
    if plain is not None:
        return plain
    sent = _sent_numbers(tensor)
    array = _as_numpy(tensor).reshape(-1)
    if len(array) != rows:
        raise BadRequest("wrong_shape", f"input {describe(tensor.name)}: {len(array)} values for shape "
                                        f"{list(tensor.shape)}")
    if datatype != "BYTES":
        values = array.tolist()
        if sent is not None and datatype in INTEGER_DATATYPES:
            _check_integers(tensor, sent, values)
        return values
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in array.tolist()]


def _sent_numbers(tensor: InferInput) -> np.ndarray | None:
    """A numeric tensor's JSON values, flat, after a 400 unless every one is a number: numpy reads true as 1 and the
    text "1_0" as 10, where v1 and batch scoring refuse both. None for binary data (its datatype's bytes) and for
    other datatypes."""
    if tensor.datatype not in NUMERIC_DATATYPES or not isinstance(tensor.data, list):
        return None
    sent = np.array(tensor.data, dtype=object).reshape(-1)
    for value in sent:
        if isinstance(value, (list, dict)):  # nested deeper than its shape says
            raise BadRequest("wrong_shape", f"input {describe(tensor.name)}: data does not fit shape "
                                            f"{list(tensor.shape)} and datatype {tensor.datatype}")
        if type(value) not in (int, float):  # a bool is an int to isinstance
            raise BadRequest("wrong_type", f"input {describe(tensor.name)}: {describe(value)} is not a number "
                                           f"(datatype {tensor.datatype}); send text as BYTES")
    return sent


def _check_integers(tensor: InferInput, sent: np.ndarray, converted: list) -> None:
    """400 unless every value of an integer tensor is the integer numpy made of it: numpy wraps 300 to 44 in UINT8
    and truncates 4.5 to 4 without a word, and the contract's checks would then see the wrong value."""
    for value, integer in zip(sent, converted):
        if value != integer:
            if isinstance(value, float) and not value.is_integer():
                raise BadRequest("wrong_type", f"input {describe(tensor.name)}: {describe(value)} is not an integer "
                                               f"(datatype {tensor.datatype})")
            info = np.iinfo(tensor.datatype.lower())
            raise BadRequest("out_of_range", f"input {describe(tensor.name)}: {describe(value)} does not fit "
                                             f"{tensor.datatype} ({info.min} to {info.max})")


def plain_tensor_values(datatype: str, data: object, rows: int) -> list | None:
    """JSON data as `as_numpy().tolist()` gives it, for the common flat lists of text, float64 or int64 values
    (int64 sent as whole floats, as pandas writes them, too); None for anything else, which numpy converts."""
    if type(data) is not list or len(data) != rows:
        return None
    if datatype == "BYTES":
        return data if all(type(value) is str for value in data) else None
    if datatype == "FP64":
        return data if all(type(value) is float for value in data) else None
    if datatype == "INT64":
        if all(type(value) is int and INT64_MIN <= value <= INT64_MAX for value in data):
            return data
        if all(type(value) is float and value.is_integer() and INT64_MIN <= value < INT64_MAX for value in data):
            return [int(value) for value in data]
    return None


def _as_numpy(tensor: InferInput) -> np.ndarray:
    try:
        return tensor.as_numpy()
    except (ValueError, TypeError, OverflowError):
        raise BadRequest("wrong_shape", f"input {describe(tensor.name)}: data does not fit shape {list(tensor.shape)} "
                                        f"and datatype {tensor.datatype}") from None


def feature_matrix(tensor: InferInput, width: int, max_batch: int) -> np.ndarray:
    """A single tensor of already-encoded features: FP32/FP64, shape [N, width], no NaN."""
    if tensor.datatype not in MATRIX_DATATYPES:
        raise BadRequest("wrong_type", f"input {describe(tensor.name)}: datatype {tensor.datatype}; an encoded feature "
                                       f"matrix must be FP32 (or name one input per raw column)")
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != width:
        raise BadRequest("wrong_shape", f"input {describe(tensor.name)}: shape {shape}, expected [N, {width}]")
    if shape[0] == 0:
        raise BadRequest("empty_batch", f"input {describe(tensor.name)}: the batch is empty")
    if shape[0] > max_batch:
        raise BadRequest("batch_too_large", f"input {describe(tensor.name)}: {shape[0]} rows, "
                                            f"above the limit of {max_batch}")
    _sent_numbers(tensor)
    matrix = _as_numpy(tensor).astype(np.float32, copy=False)
    if not np.isfinite(matrix).all():
        if np.isnan(matrix).any():
            raise BadRequest("nan_not_allowed",
                             f"input {describe(tensor.name)}: NaN is not allowed in encoded features")
        raise BadRequest("not_finite", f"input {describe(tensor.name)}: encoded features must be finite and within "
                                       "float32's range")
    return matrix
