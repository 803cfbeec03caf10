"""Request bodies a client should not send, with the 400 message each must get: shared by the
bad-input tests and the fuzz test."""

from __future__ import annotations

import json

V1 = "/v1/models/churn:predict"
EXPLAIN = "/v1/models/churn:explain"
V2 = "/v2/models/churn/infer"
V2_VERSIONED = "/v2/models/churn/versions/{version}/infer"  # with the served version: another one is a 404
DEEP = "[" * 1000 + "1" + "]" * 1000  # nested deeper than repr can print
MAX_MESSAGE = 600  # a message names the field; it never quotes a whole user value


def v1(*records) -> bytes:
    return json.dumps({"instances": list(records)}).encode()


def v2(*inputs) -> bytes:
    return json.dumps({"inputs": list(inputs)}).encode()


def tensor(name: str, datatype: str, shape: list, data: list) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def v2_record(record: dict, **fields) -> list[dict]:
    """One tensor per raw column of `record` (BYTES for text, FP64 for numbers), the `fields`' values replaced."""
    return [tensor(k, "BYTES" if isinstance(v, str) else "FP64", [1], [fields.get(k, v)]) for k, v in record.items()]


def deep(body: bytes) -> bytes:
    """`body` with its "DEEP" string replaced by a list nested 1,000 deep (too deep for json.dumps to write)."""
    return body.replace(b'"DEEP"', DEEP.encode())


def literal(body: bytes, text: str) -> bytes:
    """`body` with its "LITERAL" string replaced by `text` as a bare JSON token."""
    return body.replace(b'"LITERAL"', text.encode())


def v2_with(record: dict, **fields) -> bytes:
    """A v2 body of `record`'s tensors, with these top-level fields."""
    return json.dumps({"inputs": v2_record(record), **fields}).encode()


def hostile_cases(record: dict, version: str) -> list[tuple[str, str, bytes, str]]:
    """Non-finite and out-of-range numbers, deep nesting, long strings and mistyped v2 fields; `version`: the
    served churn package's, for the versioned infer URL."""
    versioned = V2_VERSIONED.format(version=version)
    finite = "expected a finite number within float32's range"
    others = [t for t in v2_record(record) if t["name"] != "MonthlyCharges"]
    return [
        *[(f"{value!r} on {path}", path, v1({**record, "MonthlyCharges": value}),
           f"instances[0].MonthlyCharges: {finite}")
          for path in (V1, EXPLAIN) for value in ("Infinity", "-inf", "1e999", "+inf", 1e39, "-1e39")],
        ("Infinity literal", V1, v1({**record, "MonthlyCharges": float("inf")}), "cannot decode the request"),
        ("1e999 literal", EXPLAIN, literal(v1({**record, "tenure": "LITERAL"}), "1e999"), "cannot decode the request"),
        *[(f"{value!r} in v2", path, v2(*v2_record(record, MonthlyCharges=value)),
           f"inputs[0].MonthlyCharges: {finite}" if isinstance(value, float) else
           f"input 'MonthlyCharges': {value!r} is not a number (datatype FP64)")  # text in a float tensor
          for path in (V2, versioned) for value in ("Infinity", "inf", "1e999", 1e39)],
        ("1e39 in an FP32 tensor", V2, v2(*others, tensor("MonthlyCharges", "FP32", [1], [1e39])),
         f"inputs[0].MonthlyCharges: {finite}"),
        ("1e39 in an encoded matrix", V2, v2(tensor("features", "FP64", [1, 45], [1e39] * 45)),
         "input 'features': encoded features must be finite"),
        ("nested 1000 deep, number", V1, deep(v1({**record, "tenure": "DEEP"})),
         "instances[0].tenure: expected a number, got a list"),
        ("nested 1000 deep, string", EXPLAIN, deep(v1({**record, "Contract": "DEEP"})),
         "instances[0].Contract: expected a string, got a list"),
        ("nested 1000 deep, v2 data", V2, deep(v2(*v2_record(record, Contract="DEEP"))),
         "inputs[0].Contract: expected a string, got a list"),
        ("nested 1000 deep, v2 matrix", V2, deep(v2(tensor("features", "FP32", [1, 45], "DEEP"))),
         "data does not fit shape [1, 45]"),
        ("a long string", V1, v1({**record, "Contract": "x" * 100_000}), "instances[0].Contract: 'xxxxxxxx"),
        ("a long unknown column", V1, v1({**record, "y" * 100_000: 1}), "instances[0]: unknown column 'yyyy"),
        ("a long input name", V2, v2(*v2_record(record), tensor("z" * 100_000, "FP32", [1], [1])),
         "unknown input 'zzz"),
        ("a huge integer", V1, v1({**record, "tenure": 10 ** 400}), "cannot decode the request"),
        ("a huge integer as a string", V1, v1({**record, "tenure": str(10 ** 400)}), f"instances[0].tenure: {finite}"),
        ("v2 parameters not an object", V2, v2_with(record, parameters="x"), "parameters: expected an object"),
        ("v2 versioned, parameters not an object", versioned, v2_with(record, parameters="x"),
         "parameters: expected an object"),
        ("v2 binary_data_output not a flag", V2, v2_with(record, parameters={"binary_data_output": "x"}),
         "parameters.binary_data_output: expected true or false"),
        ("v2 id not a string", V2, v2_with(record, id=5), "id: expected a string"),
        ("v2 outputs not a list", V2, v2_with(record, outputs="x"), "outputs: expected a list"),
        ("v2 output without a name", V2, v2_with(record, outputs=[{"name": 1}]), "outputs[0].name: expected a string"),
        ("v2 unknown output", V2, v2_with(record, outputs=[{"name": "q" * 10_000}]), "outputs[0].name: 'qqq"),
        ("v2 tensor parameters not an object", V2, v2({**v2_record(record)[0], "parameters": "x"}, *v2_record(record)[1:]),
         "inputs[0].parameters: expected an object"),
        ("v2 unknown datatype", V2, v2(tensor("tenure", "XYZ", [1], [1])), "inputs[0].datatype: expected one of"),
        ("v2 negative shape", V2, v2(tensor("tenure", "FP32", [-1], [1])), "inputs[0].shape: expected a list of"),
        ("v2 data not a list", V2, v2(tensor("tenure", "FP32", [1], "x")), "inputs[0].data: expected a list"),
        ("v2 binary size not a count", V2,
         v2({"name": "tenure", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": -4}}),
         "inputs[0]: has neither data nor parameters.binary_data_size"),
    ]


DRIFT = "/v1/models/churn-drift:predict"
REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RUN_EVENT = "dev.flowline.pipeline.run.finished"


def event_headers(event_type: str) -> dict[str, str]:
    """A binary-mode CloudEvent's headers, as KServe's payload logger sends them."""
    return {"ce-specversion": "1.0", "ce-type": event_type, "ce-source": "http://localhost:9081/",
            "ce-id": "fuzz", "ce-inferenceservicename": "churn", "content-type": "application/json"}


def drift_cases(record: dict) -> list[tuple[str, dict[str, str], bytes, str]]:
    """Malformed CloudEvents for the drift monitor: (name, headers, body, the 400 message)."""
    finite = "expected a finite number within float32's range"
    request, run = event_headers(REQUEST_EVENT), event_headers(RUN_EVENT)

    def run_of(**data) -> bytes:
        return json.dumps(data).encode()

    return [
        *[(f"{value!r} in an event", request, v1({**record, "MonthlyCharges": value}),
           f"instances[0].MonthlyCharges: {finite}") for value in ("Infinity", "inf", "1e999", 1e39)],
        ("1e39 in a v2 event", request, v2(*v2_record(record, tenure=1e39)), f"inputs[0].tenure: {finite}"),
        ("nested 1000 deep", request, deep(v1({**record, "tenure": "DEEP"})), "instances[0].tenure: expected a number"),
        ("an exponent past 2**31, which crashes pandas' parser", request, v1({**record, "tenure": "0e2147483648"}),
         "instances[0].tenure: expected a number"),
        ("a binary tensor in an event", request,
         v2({"name": "tenure", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}),
         "inputs[0].data: expected a list"),
        ("v2 parameters not an object", request, v2_with(record, parameters="x"), "parameters: expected an object"),
        ("no body", request, b"", "cannot decode the request"),
        ("not JSON", request, b"\xff\xfe{", "body: malformed JSON"),
        ("an unknown event type", event_headers("x" * 10_000), v1(record), "ce-type: expected"),
        ("a run without a use case", run, run_of(status="failed"), "data.use_case"),
        ("a run of a use case named by a list", run, run_of(use_case=["churn"], status="failed"), "data.use_case"),
        ("a run of a use case named by a long text", run, run_of(use_case="c" * 10_000, status="failed"),
         "data.use_case"),
        ("a run with a status of another type", run, run_of(use_case="churn", status={"a": 1}), "data.status"),
        ("a run of another use case (a new metric series per name)", run, run_of(use_case="fraud", status="failed"),
         "data.use_case: this monitor counts runs of 'churn'"),
    ]
