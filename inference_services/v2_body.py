"""The fields of a v2 infer body (the Open Inference Protocol's JSON), each checked for its type.

The model server checks a request with it before KServe parses the bytes, and the drift monitor and the
events endpoint check a logged or pushed body with it (payloads.py), so a malformed field is a 400 naming it.
The binary tensors after the JSON (the binary data extension) are checked against the sizes and shapes the
JSON declares, so a short or misdeclared one is a 400 naming its input too.
"""

from __future__ import annotations

import math
import struct

V2_DATATYPES = frozenset({"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                          "FP16", "FP32", "FP64", "BYTES"})
MAX_DIMENSIONS = 32  # numpy's limit
ITEM_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "UINT32": 4, "INT32": 4,
              "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}  # BYTES elements are each length-prefixed instead


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parameters_problem(owner: dict, where: str, flags: tuple[str, ...] = ()) -> str | None:
    """`parameters`, when given, is an object, and the named flags in it are booleans."""
    parameters = owner.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        return f"{where}parameters: expected an object"
    wrong = next((flag for flag in flags if flag in parameters and not isinstance(parameters[flag], bool)), None)
    return f"{where}parameters.{wrong}: expected true or false" if wrong else None


def _tensor_problem(tensor: object, where: str, require_data: bool) -> str | None:
    if not isinstance(tensor, dict):
        return f"{where}: expected an object with name, shape, datatype and data"
    if not isinstance(tensor.get("name"), str):
        return f"{where}.name: expected a string"
    datatype = tensor.get("datatype")
    if not (isinstance(datatype, str) and datatype in V2_DATATYPES):
        return f"{where}.datatype: expected one of {', '.join(sorted(V2_DATATYPES))}"
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMENSIONS and all(map(_is_count, shape))):
        return f"{where}.shape: expected a list of at most {MAX_DIMENSIONS} non-negative integers"
    problem = _parameters_problem(tensor, f"{where}.")
    if problem:
        return problem
    if "data" in tensor or require_data:
        return None if isinstance(tensor.get("data"), list) else f"{where}.data: expected a list"
    if not _is_count((tensor.get("parameters") or {}).get("binary_data_size")):
        return f"{where}: has neither data nor parameters.binary_data_size (a non-negative integer)"
    return None


def v2_body_problem(document: object, require_data: bool = False) -> str | None:
    """What is wrong with a v2 infer body, naming the field; None when every field has its type.

    `require_data`: tensors must carry JSON data (no binary tensors), as in a CloudEvent.
    """
    if not isinstance(document, dict):
        return "body: expected a JSON object with 'inputs'"
    if document.get("id") is not None and not isinstance(document["id"], str):
        return "id: expected a string"
    problem = _parameters_problem(document, "", ("binary_data_output",))
    if problem:
        return problem
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        return "inputs: expected a list of tensors"
    for index, tensor in enumerate(inputs):
        problem = _tensor_problem(tensor, f"inputs[{index}]", require_data)
        if problem:
            return problem
    outputs = document.get("outputs")
    if outputs is not None and not isinstance(outputs, list):
        return "outputs: expected a list of objects with a name"
    for index, output in enumerate(outputs or []):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            return f"outputs[{index}].name: expected a string"
        problem = _parameters_problem(output, f"outputs[{index}].", ("binary_data",))
        if problem:
            return problem
    return None


def binary_problem(document: dict, binary: bytes) -> str | None:
    """What is wrong with the binary tensors `binary` that a checked v2 body (`document`) declares, naming the
    input; None when each has the bytes its shape and datatype take and nothing is left over."""
    offset = 0
    for index, tensor in enumerate(document["inputs"]):
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if "data" in tensor or size is None:
            continue
        where = f"inputs[{index}] ({tensor['name']})"
        if offset + size > len(binary):
            return (f"{where}: parameters.binary_data_size is {size:,} bytes, but only {len(binary) - offset:,} "
                    f"follow the JSON from its place")
        elements = math.prod(tensor["shape"])
        problem = (_bytes_problem(binary[offset:offset + size], elements) if tensor["datatype"] == "BYTES" else
                   None if size == elements * ITEM_BYTES[tensor["datatype"]] else
                   f"{size:,} bytes, where shape {tensor['shape']} of {tensor['datatype']} takes "
                   f"{elements * ITEM_BYTES[tensor['datatype']]:,}")
        if problem:
            return f"{where}: {problem}"
        offset += size
    return None if offset == len(binary) else f"body: {len(binary) - offset:,} bytes after the last binary tensor"


def _bytes_problem(data: bytes, elements: int) -> str | None:
    """A BYTES tensor's binary data is `elements` items, each a 4-byte little-endian length and that many bytes."""
    offset, count = 0, 0
    while offset < len(data):
        if offset + 4 > len(data):
            return f"item {count}'s length prefix is cut off"
        (length,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + length > len(data):
            return f"item {count} says {length:,} bytes, and {len(data) - offset - 4:,} are left"
        offset, count = offset + 4 + length, count + 1
    return None if count == elements else f"{count} items, where its shape takes {elements}"
