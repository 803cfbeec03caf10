"""Fuzzed bodies against a live model server and drift monitor: never a 5xx, never a 200 that carries a
null or a non-finite number, every refusal a short message, and the same correct answers afterwards.

Over 2,000 bodies, each server on one kept-alive connection: v1 predict, v1 explain and v2 infer (JSON
and binary tensors) on the model server, CloudEvents on the drift monitor, plus every case of
bad_bodies.py. Besides random JSON, the strategies take a valid record and replace some of its values
with hostile ones (non-finite, beyond float32, nested 1,000 deep, long, of another type), so that
bodies get past the first checks to the FeatureSet and the model. The counts by status are printed
(`pytest -s`).
"""

import json
import math
import string
from collections import Counter

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bad_bodies import (DEEP, DRIFT, EXPLAIN, MAX_MESSAGE, REQUEST_EVENT, RUN_EVENT, V1, V2, drift_cases,
                        event_headers, hostile_cases, v2_record)
from flowline.inference_services.model import LoadedPackage
from flowline.package.format import verify
from flowline.inference_services.request_checks import FLOAT32_MAX
from serving_helpers import records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

JSON = {"Content-Type": "application/json"}
MIN_BODIES = 2000
WIDTH = 45  # churn's encoded features
ID = "customerID"  # churn's id column
HOSTILE = st.sampled_from([
    "Infinity", "-Infinity", "inf", "+inf", "NaN", "nan", "1e999", "-1e999", "1e39", 1e39, -1e39, 3.4e38, 1e20,
    FLOAT32_MAX, 1.7976931348623157e308, 5e-324, 2 ** 63, -(2 ** 63) - 1, 2 ** 64, float("inf"), float("nan"),
    "", " ", "x" * 5000, "0x10", "1_0", "0e2147483648", "8E8533691250",  # exponents that crash pandas' parser
    True, [], {}, None, "DEEP",  # "DEEP" becomes a list nested 1,000 deep
])
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(  # small: generating JSON costs more than the server takes to refuse it
    scalars | HOSTILE,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
VALUES = HOSTILE | scalars | json_values  # what replaces a valid value
DATATYPES = ["FP32", "FP64", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "FP16", "XYZ"]
FUZZ = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])


def encode(document) -> bytes:
    return json.dumps(document).replace('"DEEP"', DEEP).encode("utf-8", "surrogatepass")


def changes(record: dict) -> st.SearchStrategy[dict]:
    """Values to put in a record: one (hostile, or any JSON), or a few."""
    columns = st.sampled_from(list(record))
    return st.dictionaries(columns, HOSTILE, min_size=1, max_size=1) | st.dictionaries(columns, VALUES, min_size=1,
                                                                                        max_size=3)


def valid(rows: list[dict]) -> st.SearchStrategy[dict]:
    """Valid records: each column's value one of the values it has in `rows` (hypothesis sends no body twice)."""
    return st.fixed_dictionaries({column: st.sampled_from(list(dict.fromkeys(row[column] for row in rows)))
                                  for column in rows[0]})


def mutated(rows: list[dict]) -> st.SearchStrategy[dict]:
    """A valid record as it is, with some values replaced, one column dropped, an unknown one added, or an id
    (the use case's id column, optional) of any value."""
    record, base = rows[0], valid(rows)
    replaced = st.builds(lambda row, values: {**row, **values}, base, changes(record))
    return st.one_of(base, replaced, replaced,
                     st.builds(lambda row, gone: {k: v for k, v in row.items() if k != gone}, base,
                               st.sampled_from(list(record))),
                     st.builds(lambda row, value: {**row, "shoe_size": value}, base, VALUES),
                     st.builds(lambda row, value: {**row, ID: value}, base, st.text(max_size=12) | VALUES))


def instances(rows: list[dict]) -> st.SearchStrategy[dict]:
    return st.lists(mutated(rows), min_size=1, max_size=2).map(lambda records: {"instances": records})


def v1_bodies(rows: list[dict]) -> st.SearchStrategy[bytes]:
    documents = st.one_of(*[instances(rows)] * 4, st.fixed_dictionaries({"instances": json_values}), json_values)
    return documents.map(encode) | st.binary(max_size=40)


def v2_inputs(rows: list[dict]) -> st.SearchStrategy[list]:
    """One tensor per raw column, some values or one field of one tensor maybe replaced; or an encoded matrix."""
    record = rows[0]
    field = st.sampled_from(["name", "shape", "datatype", "data", "parameters"])
    changed = st.builds(
        lambda row, values, index, key, value: [dict(t, **({key: value} if i == index else {}))
                                                for i, t in enumerate(v2_record(record, **{**row, **values}))],
        valid(rows), st.just({}) | changes(record), st.none() | st.integers(0, len(record) - 1), field,
        st.sampled_from(DATATYPES) | VALUES)
    matrix = st.builds(
        lambda values, datatype, attribute: [
            {"name": "features", "datatype": datatype, "shape": [1, WIDTH], "data": values}, *attribute],
        st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False) | HOSTILE, min_size=WIDTH, max_size=WIDTH),
        st.sampled_from(["FP32", "FP64"]),
        st.sampled_from([[], [{"name": "SeniorCitizen", "datatype": "INT64", "shape": [1], "data": [0]}]]))
    with_id = st.builds(lambda inputs, datatype, value: [*inputs, {"name": ID, "datatype": datatype, "shape": [1],
                                                                   "data": [value]}],
                        changed | matrix, st.sampled_from(DATATYPES), st.text(max_size=12) | VALUES)
    return changed | changed | matrix | with_id


def v2_bodies(rows: list[dict]) -> st.SearchStrategy[bytes]:
    outputs = st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["probability", "decision", "x"])},
        optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()}) | json_values}), max_size=2)
    documents = st.fixed_dictionaries({"inputs": v2_inputs(rows) | v2_inputs(rows) | json_values}, optional={
        "id": st.text(max_size=8) | json_values,
        "parameters": st.fixed_dictionaries({"binary_data_output": st.booleans()}) | json_values,
        "outputs": outputs | json_values,
    })
    return documents.map(encode) | json_values.map(encode) | st.binary(max_size=40)


def binary_bodies() -> st.SearchStrategy[tuple[bytes, dict]]:
    """v2 bodies with binary tensors: a JSON header, raw bytes, and a header length that may lie."""
    headers = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["tenure", "Contract", "features", "x"]),
                                              "shape": st.lists(st.integers(-2, 50), max_size=3),
                                              "datatype": st.sampled_from(DATATYPES)}), min_size=1, max_size=3)

    def body(tensors: list, payload: bytes, cut: int) -> tuple[bytes, dict]:
        for tensor in tensors:
            tensor["parameters"] = {"binary_data_size": len(payload) // len(tensors)}
        header = json.dumps({"inputs": tensors}).encode()
        return header + payload, {"Content-Type": "application/octet-stream",
                                  "Inference-Header-Content-Length": str(len(header) + cut)}

    return st.builds(body, headers, st.binary(max_size=64), st.integers(-5, 300))


def drift_events(rows: list[dict]) -> st.SearchStrategy[tuple[bytes, dict]]:
    """CloudEvents: binary mode with a known, random or missing type, an old spec version, or structured mode."""
    headers = st.one_of(
        st.just(event_headers(REQUEST_EVENT)), st.sampled_from([REQUEST_EVENT, RUN_EVENT]).map(event_headers),
        st.text(string.ascii_letters + ".-", max_size=20).map(event_headers),
        st.sampled_from([{"ce-specversion": "1.0", "content-type": "application/json"},
                         {**event_headers(REQUEST_EVENT), "ce-specversion": "0.1"},
                         {"content-type": "application/cloudevents+json"}]),
    )
    runs = st.fixed_dictionaries({"use_case": st.just("churn") | st.text(max_size=12) | json_values,
                                  "status": st.sampled_from(["succeeded", "failed"]) | json_values})
    structured = st.fixed_dictionaries({"specversion": st.just("1.0") | json_values,
                                        "type": st.sampled_from([REQUEST_EVENT, RUN_EVENT]), "source": st.just("fuzz"),
                                        "id": st.just("1"), "data": instances(rows) | json_values})
    documents = st.one_of(instances(rows), instances(rows), v2_inputs(rows).map(lambda inputs: {"inputs": inputs}),
                          runs, structured, json_values)
    return st.tuples(documents.map(encode) | st.binary(max_size=40), headers)


def answer_of(response: httpx.Response) -> object:
    """The JSON of an answer, with the values of binary FP32 outputs added as lists."""
    json_length = response.headers.get("inference-header-content-length")
    if json_length is None:
        return json.loads(response.content)  # json.loads reads NaN and Infinity, so they cannot hide
    document = json.loads(response.content[:int(json_length)])
    offset = int(json_length)
    for output in document["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size", 0)
        if output["datatype"] == "FP32":
            output["data"] = np.frombuffer(response.content[offset:offset + size], np.float32).tolist()
        offset += size
    return document


def non_finite(value: object, where: str = "") -> str | None:
    """Where `value` holds a null or a non-finite number; None when it holds neither."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return where or "(the answer)"
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return next((found for key, child in children if (found := non_finite(child, f"{where}/{key}"))), None)


def send(client: httpx.Client, tally: Counter, target: str, path: str, body: bytes, headers: dict) -> httpx.Response:
    response = client.post(path, content=body, headers=headers)
    tally[target, response.status_code] += 1
    assert response.status_code < 500, (target, body[:300], response.text[:300])
    assert response.headers.get("connection") != "close", (target, body[:300])  # the connection stays open
    if response.status_code == 200:
        problem = non_finite(answer_of(response))
        assert problem is None, (target, body[:300], f"null or non-finite at {problem}", response.text[:300])
    else:
        error = response.json()["error"]
        assert isinstance(error, str) and len(error) < MAX_MESSAGE, (target, error[:MAX_MESSAGE])
    return response


def answers(client: httpx.Client, monitor: httpx.Client, record: dict) -> tuple:
    """What both servers answer to valid requests: v1 and v2 predictions, and an event's effect on the window."""
    v1 = client.post(V1, json={"instances": [record]}).json()
    v2 = client.post(V2, json={"inputs": v2_record(record)}).json()
    event = monitor.post(DRIFT, json={"instances": [record] * 3}, headers=event_headers(REQUEST_EVENT))
    assert event.status_code == 200, event.text
    return v1["predictions"], v1["model_version"], v2["outputs"], event.json()["rows"]


def test_fuzzed_bodies_never_get_a_5xx_nor_a_200_with_a_null_or_non_finite_number(
        server, monitor, churn_package, churn_test_rows, record):
    rows = records_of(churn_test_rows)
    tally: Counter = Counter()
    with httpx.Client(base_url=server, timeout=60) as client, httpx.Client(base_url=monitor, timeout=60) as events:
        before = answers(client, events, record)

        @settings(FUZZ, max_examples=450)
        @given(body=v1_bodies(rows))
        def predict(body: bytes) -> None:
            send(client, tally, "v1 predict", V1, body, JSON)

        @settings(FUZZ, max_examples=350)
        @given(body=v1_bodies(rows))
        def explain(body: bytes) -> None:
            send(client, tally, "v1 explain", EXPLAIN, body, JSON)

        @settings(FUZZ, max_examples=550)
        @given(body=v2_bodies(rows))
        def infer(body: bytes) -> None:
            send(client, tally, "v2 infer", V2, body, JSON)

        @settings(FUZZ, max_examples=150)
        @given(body_and_headers=binary_bodies())
        def infer_binary(body_and_headers: tuple[bytes, dict]) -> None:
            send(client, tally, "v2 infer, binary", V2, *body_and_headers)

        @settings(FUZZ, max_examples=500)
        @given(event=drift_events(rows))
        def drift(event: tuple[bytes, dict]) -> None:
            send(events, tally, "drift monitor", DRIFT, *event)

        for fuzz in (predict, explain, infer, infer_binary, drift):
            fuzz()
        for name, path, body, message in hostile_cases(record, verify(churn_package)["version"]):
            assert message in send(client, tally, "listed cases", path, body, JSON).json()["error"], name
        for name, headers, body, message in drift_cases(record):
            assert message in send(events, tally, "listed cases", DRIFT, body, headers).json()["error"], name
        after = answers(client, events, record)

    targets = sorted({target for target, _ in tally})
    statuses = sorted({status for _, status in tally})
    print(f"\nfuzzed bodies by status: {sum(tally.values())} in all")
    for target in targets:
        print(f"  {target:18} " + "  ".join(f"{status}: {tally[target, status]}" for status in statuses))
    assert sum(tally.values()) >= MIN_BODIES
    assert all(status < 500 for _, status in tally)
    assert tally["v1 predict", 200] and tally["v2 infer", 200] and tally["v1 explain", 200]  # bodies reached the model
    assert after == before  # the same answers, from the same version
    package, frame = LoadedPackage.load(churn_package), churn_test_rows.dropna().head(1)  # the record's row
    assert after[0][0]["probability"] == pytest.approx(float(package.predict(frame)[0]), abs=1e-6)
    assert after[0][0]["decision"] == package.labels(package.decide_frame(frame))[0]
