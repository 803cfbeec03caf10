"""Bad input: a 4xx naming the field, never a 500, and the server and the connection stay up."""

import http.client
import json
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from serving_helpers import MAX_BATCH, records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

V1 = "/v1/models/churn:predict"
V2 = "/v2/models/churn/infer"


@pytest.fixture(scope="module")
def record(churn_test_rows) -> dict:
    return records_of(churn_test_rows.dropna().head(1))[0]


def v1(*records) -> bytes:
    return json.dumps({"instances": list(records)}).encode()


def v2(*inputs) -> bytes:
    return json.dumps({"inputs": list(inputs)}).encode()


def tensor(name: str, datatype: str, shape: list, data: list) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def cases(record: dict) -> list[tuple[str, str, bytes, str]]:
    without_tenure = {k: v for k, v in record.items() if k != "tenure"}
    return [
        ("missing column", V1, v1(without_tenure), "instances[0]: missing column 'tenure'"),
        ("unknown column", V1, v1({**record, "shoe_size": 43}), "instances[0]: unknown column 'shoe_size'"),
        ("wrong type", V1, v1({**record, "tenure": "long"}), "instances[0].tenure: expected a number, got 'long'"),
        ("wrong type, string column", V1, v1({**record, "Contract": 2}), "instances[0].Contract: expected a string"),
        ("NaN not allowed", V1, v1({**record, "MonthlyCharges": "NaN"}), "instances[0].MonthlyCharges: NaN is not allowed"),
        ("null not allowed", V1, v1({**record, "tenure": None}), "instances[0].tenure: null is not allowed"),
        ("out of range", V1, v1({**record, "tenure": -3}), "instances[0].tenure: -3 is outside"),
        ("unknown category", V1, v1({**record, "Contract": "Three year"}), "instances[0].Contract: 'Three year' is not one of"),
        ("empty batch", V1, v1(), "instances: the batch is empty"),
        ("batch over the limit", V1, v1(*[record] * (MAX_BATCH + 1)), f"{MAX_BATCH + 1} records, above the limit of {MAX_BATCH}"),
        ("malformed JSON v1", V1, b'{"instances": [', "cannot decode the request"),
        ("not an object", V1, b"[1, 2]", "expected an object with 'instances'"),
        ("malformed JSON v2", V2, b'{"inputs": [', "body: malformed JSON"),
        ("v2 schema", V2, b'{"inputs": {"tenure": 1}}', "inputs: expected a list of tensors"),
        ("v2 tensor without a name", V2, v2({"shape": [1], "datatype": "FP32", "data": [1]}), "inputs[0].name: expected a string"),
        ("v2 missing input", V2, v2(tensor("tenure", "INT64", [1], [5])), "missing input 'SeniorCitizen'"),
        ("v2 unknown input", V2, v2(tensor("tenure", "INT64", [1], [5]), tensor("shoe", "INT64", [1], [1])),
         "unknown input 'shoe'"),
        ("v2 wrong datatype", V2, v2(*[tensor(k, "BYTES", [1], [str(v)]) for k, v in record.items()]),
         "input 'SeniorCitizen': datatype BYTES, expected a numeric type"),
        ("v2 wrong tensor shape", V2, v2(*[tensor(k, "BYTES" if isinstance(v, str) else "FP64", [1, 2], [v, v])
                                           for k, v in record.items()]), "shape [1, 2], expected [N] or [N, 1]"),
        ("v2 data does not fit shape", V2, v2(tensor("features", "FP32", [2, 45], [0.0] * 45)),
         "input 'features': data does not fit shape [2, 45]"),
        ("v2 matrix of the wrong width", V2, v2(tensor("features", "FP32", [1, 3], [0.0] * 3)),
         "input 'features': shape [1, 3], expected [N, 45]"),
        ("v2 empty batch", V2, v2(tensor("features", "FP32", [0, 45], [])), "input 'features': the batch is empty"),
    ]


def test_every_bad_input_is_a_400_naming_the_field_on_a_kept_alive_connection(server, record):
    address = urlparse(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.connect()
    socket_before = connection.sock
    for name, path, body, message in cases(record):
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read().decode()
        assert response.status == 400, (name, response.status, answer)
        assert message in json.loads(answer)["error"], (name, answer)
        assert response.getheader("connection") != "close", name
    connection.request("POST", V1, body=v1(record), headers={"Content-Type": "application/json"})
    assert connection.getresponse().status == 200
    assert connection.sock is socket_before  # the same TCP connection served every request


def test_nan_in_binary_tensors_is_refused(server, churn_package):
    """JSON cannot carry NaN, but the binary tensor format can."""
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    matrix = np.zeros((1, 45), dtype=np.float32)
    matrix[0, 3] = np.nan
    features = triton.InferInput("features", [1, 45], "FP32")
    features.set_data_from_numpy(matrix, binary_data=True)
    with pytest.raises(InferenceServerException, match="NaN is not allowed") as caught:
        client.infer("churn", [features])
    assert caught.value.status() == "400"


def test_refusals_are_counted_by_reason(server, record):
    before = httpx.get(f"{server}/metrics").text
    httpx.post(server + V1, content=v1({**record, "shoe_size": 43}), headers={"Content-Type": "application/json"})
    after = httpx.get(f"{server}/metrics").text

    def count(text: str) -> float:
        line = next((l for l in text.splitlines() if l.startswith(
            'flowline_invalid_inputs_total{model_name="churn",reason="unknown_column"}')), " 0")
        return float(line.rsplit(" ", 1)[1])

    assert count(after) == count(before) + 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
COLUMNS = ["tenure", "Contract", "TotalCharges", "SeniorCitizen", "features", "x"]
DATATYPES = ["FP32", "FP64", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "FP16", "XYZ"]
tensors = st.fixed_dictionaries({
    "name": st.sampled_from(COLUMNS),
    "shape": st.lists(st.integers(-2, 50), max_size=3),
    "datatype": st.sampled_from(DATATYPES),
    "data": st.lists(json_values, max_size=6),
})
records = st.dictionaries(st.sampled_from(COLUMNS), json_values, max_size=6)
bodies = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries({"instances": st.lists(records, max_size=3)}).map(json.dumps),
    st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=3)}).map(json.dumps),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from([V1, "/v1/models/churn:explain", V2]), body=bodies)
def test_fuzzed_bodies_never_get_a_5xx(server, path, body):
    response = httpx.post(server + path, content=body.encode("utf-8", "surrogatepass"),
                          headers={"Content-Type": "application/json"})
    assert response.status_code < 500, (path, body, response.text)


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.lists(tensors, min_size=1, max_size=3), payload=st.binary(max_size=64), cut=st.integers(-5, 300))
def test_fuzzed_binary_tensor_bodies_never_get_a_5xx(server, header, payload, cut):
    for tensor_header in header:
        tensor_header.pop("data")
        tensor_header["parameters"] = {"binary_data_size": len(payload) // len(header)}
    json_part = json.dumps({"inputs": header}).encode()
    response = httpx.post(server + V2, content=json_part + payload, headers={
        "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(json_part) + cut)})
    assert response.status_code < 500, (header, payload, cut, response.text)


def test_the_server_is_alive_after_all_of_it(server, record):
    assert httpx.get(f"{server}/v2/health/live").status_code == 200
    assert httpx.post(server + V1, content=v1(record), headers={"Content-Type": "application/json"}).status_code == 200
