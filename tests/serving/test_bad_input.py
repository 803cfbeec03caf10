"""Bad input: a 4xx naming the field, never a 500, and the server and the connection stay up."""

import http.client
import json
import re
from urllib.parse import urlparse

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from bad_bodies import EXPLAIN, MAX_MESSAGE, V1, V2, hostile_cases, tensor, v1, v2, v2_record
from flowline.inference_services.model import LoadedPackage
from flowline.package.format import verify
from serving_helpers import MAX_BATCH, MAX_EXPLAIN_ROWS, records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


def cases(record: dict) -> list[tuple[str, str, bytes, str]]:
    without_tenure = {k: v for k, v in record.items() if k != "tenure"}
    return [
        ("missing column", V1, v1(without_tenure), "instances[0]: missing column 'tenure'"),
        ("unknown column", V1, v1({**record, "shoe_size": 43}), "instances[0]: unknown column 'shoe_size'"),
        ("wrong type", V1, v1({**record, "tenure": "long"}), "instances[0].tenure: expected a number, got 'long'"),
        ("wrong type, string column", V1, v1({**record, "Contract": 2}), "instances[0].Contract: expected a string"),
        ("NaN as text", V1, v1({**record, "MonthlyCharges": "NaN"}),
         "instances[0].MonthlyCharges: expected a number, got 'NaN'"),  # ingest quarantines it too
        ("a number Python reads but ingest does not", V1, v1({**record, "tenure": "1_0"}),
         "instances[0].tenure: expected a number, got '1_0'"),
        ("non-ASCII digits", V1, v1({**record, "MonthlyCharges": "\u0661\u0662"}),
         "instances[0].MonthlyCharges: expected a number"),
        ("an exponent past 2**31, which crashes pandas' parser", V1, v1({**record, "tenure": "0e2147483648"}),
         "instances[0].tenure: expected a number, got '0e2147483648'"),
        ("a huge exponent on explain", EXPLAIN, v1({**record, "MonthlyCharges": "8E8533691250"}),
         "instances[0].MonthlyCharges: expected a finite number"),
        ("null not allowed", V1, v1({**record, "tenure": None}), "instances[0].tenure: null is not allowed"),
        ("out of range", V1, v1({**record, "tenure": -3}), "instances[0].tenure: -3 is outside"),
        ("unknown category", V1, v1({**record, "Contract": "Three year"}), "instances[0].Contract: 'Three year' is not one of"),
        ("a category in other case", V1, v1({**record, "InternetService": "dsl"}),
         "instances[0].InternetService: 'dsl' is not one of ['DSL', 'Fiber optic', 'No']"),
        ("empty batch", V1, v1(), "instances: the batch is empty"),
        ("batch over the limit", V1, v1(*[record] * (MAX_BATCH + 1)), f"{MAX_BATCH + 1} records, above the limit of {MAX_BATCH}"),
        ("explain over its row limit", EXPLAIN, v1(*[record] * (MAX_EXPLAIN_ROWS + 1)),
         f"instances: {MAX_EXPLAIN_ROWS + 1} records, above the explain limit of {MAX_EXPLAIN_ROWS} (--max-explain-rows)"),
        ("explain over both limits", EXPLAIN, v1(*[record] * (MAX_BATCH + 1)), "above the explain limit"),
        ("malformed JSON v1", V1, b'{"instances": [', "cannot decode the request"),
        ("not an object", V1, b"[1, 2]", "expected an object with 'instances'"),
        ("malformed JSON v2", V2, b'{"inputs": [', "body: malformed JSON"),
        ("v2 schema", V2, b'{"inputs": {"tenure": 1}}', "inputs: expected a list of tensors"),
        ("v2 tensor without a name", V2, v2({"shape": [1], "datatype": "FP32", "data": [1]}), "inputs[0].name: expected a string"),
        ("v2 missing input", V2, v2(tensor("tenure", "INT64", [1], [5])), "missing input 'SeniorCitizen'"),
        ("v2 unknown input", V2, v2(tensor("tenure", "INT64", [1], [5]), tensor("shoe", "INT64", [1], [1])),
         "unknown input 'shoe'"),
        ("v2 wrong datatype, numeric column", V2, v2(*[dict(t, datatype="BOOL", data=[True]) if t["name"] == "SeniorCitizen"
                                                       else t for t in v2_record(record)]),
         "input 'SeniorCitizen': datatype BOOL, expected a numeric type (FP32, FP64, INT64, ...) or BYTES text"),
        ("v2 wrong datatype, string column", V2, v2(*[tensor(k, "FP64", [1], [1.0] if isinstance(v, str) else [v])
                                                      for k, v in record.items()]),
         "input 'gender': datatype FP64, expected BYTES"),
        ("v2 wrong tensor shape", V2, v2(*[tensor(k, "BYTES" if isinstance(v, str) else "FP64", [1, 2], [v, v])
                                           for k, v in record.items()]), "shape [1, 2], expected [N] or [N, 1]"),
        ("v2 data does not fit shape", V2, v2(tensor("features", "FP32", [2, 45], [0.0] * 45)),
         "input 'features': data does not fit shape [2, 45]"),
        ("v2 matrix of the wrong width", V2, v2(tensor("features", "FP32", [1, 3], [0.0] * 3)),
         "input 'features': shape [1, 3], expected [N, 45]"),
        ("v2 empty batch", V2, v2(tensor("features", "FP32", [0, 45], [])), "input 'features': the batch is empty"),
        ("v2 input given twice", V2, v2(*v2_record(record), tensor("tenure", "INT64", [1], [70])),
         "inputs: input 'tenure' is given more than once"),
        *[(f"v2 {value!r} in {datatype}", V2, v2(*[tensor("tenure", datatype, [1], [value]) if t["name"] == "tenure"
                                                   else t for t in v2_record(record)]), message)
          for datatype, value, message in [
              ("UINT8", 300, "input 'tenure': 300 does not fit UINT8 (0 to 255)"),  # numpy would make it 44
              ("INT8", 200, "input 'tenure': 200 does not fit INT8 (-128 to 127)"),
              ("INT32", 4294967301, "input 'tenure': 4294967301 does not fit INT32"),
              ("INT32", 4.5, "input 'tenure': 4.5 is not an integer (datatype INT32)"),  # numpy would make it 4
              ("INT64", 4.99, "input 'tenure': 4.99 is not an integer (datatype INT64)"),
              ("INT32", "5", "input 'tenure': '5' is not a number (datatype INT32); send text as BYTES"),
              # numpy reads these in a float tensor as 1 and 10, where v1 and batch scoring refuse them
              ("FP64", True, "input 'tenure': True is not a number (datatype FP64); send text as BYTES"),
              ("FP32", "1_0", "input 'tenure': '1_0' is not a number (datatype FP32); send text as BYTES"),
          ]],
        ("v2 text in an encoded feature matrix", V2, v2(tensor("features", "FP32", [1, 45], [0.0] * 44 + ["1_0"])),
         "input 'features': '1_0' is not a number (datatype FP32); send text as BYTES"),
    ]


def test_every_bad_input_is_a_400_naming_the_field_on_a_kept_alive_connection(server, record, churn_package):
    address = urlparse(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.connect()
    socket_before = connection.sock
    for name, path, body, message in cases(record) + hostile_cases(record, verify(churn_package)["version"]):
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read().decode()
        assert response.status == 400, (name, response.status, answer[:300])
        error = json.loads(answer)["error"]
        assert message in error and len(error) < MAX_MESSAGE, (name, error[:MAX_MESSAGE])
        assert response.getheader("connection") != "close", name
    connection.request("POST", V1, body=v1(record), headers={"Content-Type": "application/json"})
    assert connection.getresponse().status == 200
    assert connection.sock is socket_before  # the same TCP connection served every request


def test_an_explain_carries_at_most_its_row_limit_while_predict_takes_the_batch_limit(server, record):
    """An explain costs up to 0.15 s a row (fraud-claims' CatBoost) and runs one at a time per worker: its own limit,
    well below the batch limit, bounds how long it holds the others up."""
    at_limit = httpx.post(server + EXPLAIN, content=v1(*[record] * MAX_EXPLAIN_ROWS),
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert at_limit.status_code == 200 and len(at_limit.json()["explanations"]) == MAX_EXPLAIN_ROWS
    over = v1(*[record] * (MAX_EXPLAIN_ROWS + 1))
    refused = httpx.post(server + EXPLAIN, content=over, headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and refused.json()["error"].startswith("instances: ")
    assert httpx.post(server + V1, content=over, headers={"Content-Type": "application/json"}).status_code == 200


def test_a_generated_feature_beyond_float32_is_refused_naming_its_columns(server, card_package):
    """Each value is within the contract, but card-fraud's generated ratio (or product) of two is not a float32."""
    feature_set = LoadedPackage.load(card_package).feature_set
    name = next(name for name in feature_set.generated_names if "/" in name or "*" in name)
    first, operator, second = re.fullmatch(r"(\w+)([/*])(\w+)", name).groups()
    record = records_of(pd.read_parquet(card_package.parent / "test")[feature_set.input_columns].head(1))[0]
    body = v1({**record, first: 1e20, second: 1e-20 if operator == "/" else 1e20})
    columns = ", ".join(column for column in feature_set.input_columns if column in (first, second))
    for path in ("/v1/models/card-fraud:predict", "/v1/models/card-fraud:explain"):
        response = httpx.post(server + path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == (f"instances[0]: {columns}: the feature {name} computed from them "
                                            "is beyond float32's range")


@pytest.mark.parametrize("value, message", [(np.nan, "NaN is not allowed"), (-np.inf, "must be finite")])
def test_nan_and_infinity_in_binary_tensors_are_refused(server, churn_package, value, message):
    """JSON cannot carry NaN or infinity, but the binary tensor format can."""
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    matrix = np.zeros((1, 45), dtype=np.float32)
    matrix[0, 3] = value
    features = triton.InferInput("features", [1, 45], "FP32")
    features.set_data_from_numpy(matrix, binary_data=True)
    with pytest.raises(InferenceServerException, match=message) as caught:
        client.infer("churn", [features])
    assert caught.value.status() == "400"


def binary_body(*tensors: tuple[str, str, list, bytes], after: bytes = b"") -> tuple[bytes, dict]:
    """A v2 body of binary tensors (name, datatype, shape, bytes) and the header saying where its JSON ends."""
    document = json.dumps({"inputs": [{"name": name, "datatype": datatype, "shape": shape,
                                       "parameters": {"binary_data_size": len(data)}}
                                      for name, datatype, shape, data in tensors]}).encode()
    return document + b"".join(t[3] for t in tensors) + after, {"inference-header-content-length": str(len(document))}


@pytest.mark.parametrize("tensors, after, message", [
    ([("tenure", "FP64", [2], b"\0" * 8)], b"", "inputs[0] (tenure): 8 bytes, where shape [2] of FP64 takes 16"),
    ([("tenure", "FP64", [1], b"\0" * 8), ("gender", "BYTES", [2], b"\4\0\0\0Male")], b"",
     "inputs[1] (gender): 1 items, where its shape takes 2"),
    ([("gender", "BYTES", [1], b"\xff\xff\xff\x7fMale")], b"", "inputs[0] (gender): item 0 says 2,147,483,647 bytes"),
    ([("tenure", "FP64", [1], b"\0" * 8)], b"\0" * 4, "body: 4 bytes after the last binary tensor"),
], ids=["short for its shape", "too few BYTES items", "a BYTES length past the end", "bytes left over"])
def test_a_binary_tensor_that_does_not_fit_its_declaration_is_a_400_naming_it(server, tensors, after, message):
    body, headers = binary_body(*tensors, after=after)
    response = httpx.post(server + V2, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_refusals_are_counted_by_reason(server, record):
    before = httpx.get(f"{server}/metrics").text
    httpx.post(server + V1, content=v1({**record, "shoe_size": 43}), headers={"Content-Type": "application/json"})
    after = httpx.get(f"{server}/metrics").text

    def count(text: str) -> float:
        line = next((l for l in text.splitlines() if l.startswith(
            'flowline_invalid_inputs_total{model_name="churn",reason="unknown_column"}')), " 0")
        return float(line.rsplit(" ", 1)[1])

    assert count(after) == count(before) + 1


def test_requests_to_names_not_served_add_no_series(server, record):
    names = [f"scan-{n}" for n in range(3)]
    for name in names:
        assert httpx.post(f"{server}/v1/models/{name}:predict", json={"instances": [record]}).status_code == 404
    metrics = httpx.get(f"{server}/metrics").text
    assert not any(name in metrics for name in names)
    assert 'flowline_http_requests_total{code="404",model_name="",model_version=""}' in metrics


def test_the_server_is_alive_after_all_of_it(server, record):
    assert httpx.get(f"{server}/v2/health/live").status_code == 200
    assert httpx.post(server + V1, content=v1(record), headers={"Content-Type": "application/json"}).status_code == 200
