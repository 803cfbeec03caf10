"""The use case's id columns at serving, over real HTTP: accepted in v1 and v2 requests (optional, never
features), repeated with each answer in row order, written to the prediction log, accepted and ignored by
the drift monitor; and numeric columns sent as v2 BYTES text checked and converted exactly as v1 does."""

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton

from bad_bodies import DRIFT, REQUEST_EVENT, event_headers
from flowline.drift import load_calibration
from flowline.inference_services.local_server import running_server
from flowline.inference_services.model import LoadedPackage
from flowline.inference_services.request_checks import MAX_ID_CHARACTERS
from serving_helpers import AUTHORIZED, column_tensors, records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

V1, EXPLAIN, V2 = "/v1/models/churn:predict", "/v1/models/churn:explain", "/v2/models/churn/infer"
ID = "customerID"  # churn's id column
ANSWER = ["probability", "decision", "threshold"]  # what a churn answer row holds without ids


@pytest.fixture(scope="module")
def logged(churn_package, tmp_path_factory) -> tuple[str, Path]:
    """A churn server writing its prediction log."""
    folder = tmp_path_factory.mktemp("ids")
    log = folder / "predictions.jsonl"
    with running_server([str(churn_package)], log_path=str(folder / "server.log"),
                        extra_args=["--prediction-log", str(log)]) as url:
        yield url, log


@pytest.fixture(scope="module")
def loaded(churn_package) -> LoadedPackage:
    return LoadedPackage.load(churn_package)


@pytest.fixture(scope="module")
def rows(churn_package, loaded) -> pd.DataFrame:
    """Complete test rows of churn with their customer ids, as an application holds them."""
    assert loaded.use_case.id_columns == [ID]
    frame = pd.read_parquet(churn_package.parent / "test")[[*loaded.use_case.feature_columns, ID]]
    return frame.dropna().head(6).reset_index(drop=True)


def features_of(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.drop(columns=[ID])


def v2_tensors(loaded: LoadedPackage, rows: pd.DataFrame, with_ids: bool) -> list[dict]:
    columns = [*loaded.feature_set.input_columns, *([ID] if with_ids else [])]
    return column_tensors(loaded.use_case, rows, columns)


def test_v1_answers_repeat_each_rows_id_in_order_and_are_otherwise_unchanged(logged, rows):
    url, _ = logged
    with_ids = httpx.post(url + V1, json={"instances": records_of(rows)}).json()["predictions"]
    without = httpx.post(url + V1, json={"instances": records_of(features_of(rows))}).json()["predictions"]
    assert [list(p) for p in without] == [ANSWER] * len(rows)
    assert [p[ID] for p in with_ids] == rows[ID].tolist()
    assert [{k: v for k, v in p.items() if k != ID} for p in with_ids] == without
    # Ids are optional per row: a batch may mix rows with and without one.
    mixed = records_of(rows.head(2))
    del mixed[1][ID]
    answered = httpx.post(url + V1, json={"instances": mixed}).json()["predictions"]
    assert answered[0][ID] == rows[ID][0] and ID not in answered[1] and answered == [with_ids[0], without[1]]
    explained = httpx.post(url + EXPLAIN, json={"instances": records_of(rows.head(2))}).json()["explanations"]
    assert [e[ID] for e in explained] == rows[ID].head(2).tolist() and ID not in explained[0]["contributions"]


def test_v2_answers_carry_an_output_tensor_per_id_in_row_order(logged, loaded, rows):
    url, _ = logged
    answer = httpx.post(url + V2, json={"inputs": v2_tensors(loaded, rows, True)}).json()
    without = httpx.post(url + V2, json={"inputs": v2_tensors(loaded, rows, False)}).json()
    assert [o["name"] for o in without["outputs"]] == ANSWER
    assert [o["name"] for o in answer["outputs"]] == [*ANSWER, ID]
    ids = answer["outputs"][-1]
    assert ids == {"name": ID, "datatype": "BYTES", "shape": [len(rows)], "data": rows[ID].tolist()}
    assert answer["outputs"][:-1] == without["outputs"]


@pytest.mark.parametrize("sent", ["", "req-1"])
def test_a_v2_request_id_comes_back_as_sent_even_empty(logged, loaded, rows, sent):
    url, _ = logged
    answer = httpx.post(url + V2, json={"id": sent, "inputs": v2_tensors(loaded, rows, False)},
                        headers={"x-request-id": "from-the-proxy"}).json()
    assert answer["id"] == sent


def test_a_request_id_too_long_to_repeat_is_a_400_naming_where_it_came_from(logged, loaded, rows):
    """The answer and the prediction log repeat a request's id: 100,000 characters were accepted and echoed."""
    url, _ = logged
    body = {"id": "r" * (MAX_ID_CHARACTERS + 1), "inputs": v2_tensors(loaded, rows, False)}
    response = httpx.post(url + V2, json=body)
    assert response.status_code == 400 and response.json()["error"] == (
        f"id: {MAX_ID_CHARACTERS + 1} characters, at most {MAX_ID_CHARACTERS}")
    long_header = {"x-request-id": "h" * (MAX_ID_CHARACTERS + 1)}
    response = httpx.post(url + V1, json={"instances": records_of(features_of(rows.head(1)))}, headers=long_header)
    assert response.status_code == 400 and response.json()["error"].startswith("header x-request-id: ")
    at_most = httpx.post(url + V2, json={**body, "id": "r" * MAX_ID_CHARACTERS})
    assert at_most.status_code == 200 and at_most.json()["id"] == "r" * MAX_ID_CHARACTERS


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_sends_and_gets_ids(logged, loaded, rows, binary: bool):
    url, _ = logged
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    inputs = []
    for column in [*loaded.feature_set.input_columns, ID]:
        spec = loaded.use_case.columns[column]
        datatype, dtype = {"integer": ("INT64", np.int64), "number": ("FP64", np.float64)}.get(spec.type,
                                                                                             ("BYTES", object))
        tensor = triton.InferInput(column, [len(rows)], datatype)
        tensor.set_data_from_numpy(rows[column].to_numpy().astype(dtype), binary_data=binary)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probability", ID)]
    result = client.infer("churn", inputs, outputs=outputs,
                          headers=None if binary else {"Content-Type": "application/json"})
    assert [i.decode() if isinstance(i, bytes) else i for i in result.as_numpy(ID)] == rows[ID].tolist()
    assert np.array_equal(result.as_numpy("probability"), loaded.predict(features_of(rows)))


def test_ids_beside_an_encoded_matrix_are_returned(logged, loaded, rows):
    url, _ = logged
    matrix = loaded.feature_set.transform(features_of(rows))
    inputs = [{"name": "features", "shape": list(matrix.shape), "datatype": "FP32", "data": matrix.ravel().tolist()},
              *column_tensors(loaded.use_case, rows, ["SeniorCitizen", ID])]
    response = httpx.post(url + V2, json={"inputs": inputs})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs[ID] == rows[ID].tolist()
    assert np.array_equal(np.array(outputs["probability"], np.float32), loaded.predict(features_of(rows)))


def bad_ids(record: dict, loaded: LoadedPackage, rows: pd.DataFrame) -> list[tuple[str, str, dict, str]]:
    """(name, path, body, the 400 message) for ids a client should not send."""
    one = rows.head(1)

    def v1(value) -> dict:
        return {"instances": [{**record, ID: value}]}

    def v2(datatype: str, data: list) -> dict:
        return {"inputs": [*v2_tensors(loaded, one, False), {"name": ID, "datatype": datatype, "shape": [len(data)],
                                                             "data": data}]}

    long = "x" * (MAX_ID_CHARACTERS + 1)
    too_long = f"an id of {MAX_ID_CHARACTERS + 1} characters, above the limit of {MAX_ID_CHARACTERS}"
    return [
        ("a number", V1, v1(4.5), "instances[0].customerID: expected a string, got 4.5"),
        ("null", V1, v1(None), "instances[0].customerID: null is not allowed in an id; leave the id out instead"),
        ("blank", EXPLAIN, v1("  "), "instances[0].customerID: blank is not allowed in an id"),
        ("an object", V1, v1({"a": 1}), "instances[0].customerID: expected a string, got an object"),
        ("too long", V1, v1(long), f"instances[0].customerID: {too_long}"),
        ("v2 numeric datatype", V2, v2("FP64", [1.0]), "input 'customerID': datatype FP64, expected BYTES"),
        ("v2 null", V2, v2("BYTES", [None]), "inputs[0].customerID: null is not allowed in an id"),
        ("v2 too long", V2, v2("BYTES", [long]), f"inputs[0].customerID: {too_long}"),
        ("v2 more ids than rows", V2, v2("BYTES", ["a", "b"]), "inputs: tensors hold different numbers of rows [1, 2]"),
    ]


def test_a_bad_id_is_a_400_naming_the_field_and_is_logged_as_refused(logged, loaded, rows):
    url, log = logged
    record = records_of(features_of(rows.head(1)))[0]
    for name, path, body, message in bad_ids(record, loaded, rows):
        response = httpx.post(url + path, json=body, headers={"x-request-id": f"bad-{name}"})
        assert response.status_code == 400, (name, response.text)
        assert message in response.json()["error"], (name, response.json()["error"])
    lines = {line["request_id"]: line for line in map(json.loads, log.read_text().splitlines())}
    assert lines["bad-a number"]["error"] == "BadRequest" and lines["bad-a number"]["ids"] == {}
    assert lines["bad-a number"]["answers"] == {}  # refused: nothing answered


def test_an_integer_for_a_text_id_joins_as_its_text_and_comes_back_as_sent(logged, loaded, rows):
    """pandas reads an id column of digits as numbers: a request built from the frame sends 1001, not "1001"."""
    url, _ = logged
    record = records_of(features_of(rows.head(1)))[0]
    answer = httpx.post(url + V1, json={"instances": [{**record, ID: 1001}]})
    assert answer.status_code == 200 and answer.json()["predictions"][0][ID] == 1001, answer.text
    tensors = [*v2_tensors(loaded, rows.head(1), False), {"name": ID, "datatype": "INT64", "shape": [1], "data": [1001]}]
    outputs = {o["name"]: o for o in httpx.post(url + V2, json={"inputs": tensors}).json()["outputs"]}
    assert (outputs[ID]["datatype"], outputs[ID]["data"]) == ("INT64", [1001])


def test_the_prediction_log_carries_the_ids_per_row(logged, loaded, rows):
    url, log = logged
    mixed = records_of(rows.head(3))
    del mixed[1][ID]
    for request_id, body, path in [("ids-v1", {"instances": mixed}, V1),
                                   ("ids-v2", {"inputs": v2_tensors(loaded, rows, True)}, V2),
                                   ("no-ids", {"instances": records_of(features_of(rows))}, V1)]:
        response = httpx.post(url + path, json=body, headers={"x-request-id": request_id})
        assert response.status_code == 200, response.text
    lines = {line["request_id"]: line for line in map(json.loads, log.read_text().splitlines())}
    assert lines["ids-v1"]["ids"] == {ID: [rows[ID][0], None, rows[ID][2]]} and lines["ids-v1"]["rows"] == 3
    assert lines["ids-v2"]["ids"] == {ID: rows[ID].tolist()}
    assert lines["no-ids"]["ids"] == {} and lines["no-ids"]["error"] is None
    # and what each row was answered, so that a disputed decision can be rebuilt from the log (it held no output)
    answer = httpx.post(url + V1, json={"instances": mixed}, headers={"x-request-id": "answers"}).json()
    logged_answers = json.loads(log.read_text().splitlines()[-1])["answers"]
    predictions = answer["predictions"]
    assert logged_answers["score"] == pytest.approx([p["probability"] for p in predictions], abs=1e-7)
    assert logged_answers["decision"] == [p["decision"] for p in predictions]
    assert logged_answers["threshold"] == pytest.approx([p["threshold"] for p in predictions], abs=1e-7)


def test_the_drift_monitor_accepts_logged_requests_with_ids_and_ignores_them(monitor, churn_package, loaded):
    """The payload logger forwards requests as they came: with ids, the same windows and p-values as without."""
    size = load_calibration(churn_package / "drift").window_size
    test = pd.read_parquet(churn_package.parent / "test")[[*loaded.use_case.feature_columns, ID]]
    test = test.dropna().head(size)  # complete rows: JSON tensors cannot carry null
    assert len(test) == size

    def window_p_values(frame: pd.DataFrame, v2: bool) -> dict:
        reloaded = httpx.post(f"{monitor}/v2/repository/models/churn-drift/load", headers=AUTHORIZED, timeout=60)
        assert reloaded.status_code == 200  # an empty window
        if v2:
            body = {"inputs": column_tensors(loaded.use_case, frame, list(frame.columns))}
        else:
            body = {"instances": records_of(frame)}
        response = httpx.post(monitor + DRIFT, json=body, headers=event_headers(REQUEST_EVENT), timeout=60)
        assert response.status_code == 200, response.text
        tests = response.json()["tests"]
        assert len(tests) == 1 and response.json()["rows"] == size
        return tests[0]["p_values"]

    without = window_p_values(test.drop(columns=[ID]), v2=False)
    assert window_p_values(test, v2=False) == without
    assert window_p_values(test, v2=True) == without
    bad = httpx.post(monitor + DRIFT, json={"instances": [{**records_of(test.head(1))[0], ID: 7.5}]},
                     headers=event_headers(REQUEST_EVENT))
    assert bad.status_code == 400 and "instances[0].customerID: expected a string, got 7.5" in bad.json()["error"]


# A numeric column's value as a JSON string in v1 and as BYTES text in v2: accepted as the number (None: the
# message the refusal must carry after the field).
NUMBER_TEXT = [
    ("tenure", "42", 42), ("tenure", " 7 ", 7), ("tenure", "12.0", 12), ("tenure", "1e1", 10),
    ("MonthlyCharges", "70.35", 70.35), ("MonthlyCharges", "-0", 0.0),
    ("tenure", "4.5", "expected an integer, got '4.5'"),
    ("tenure", "abc", "expected a number, got 'abc'"),
    ("tenure", "0x10", "expected a number, got '0x10'"),
    ("tenure", "-3", "'-3' is outside [0.0, 120.0]"),
    ("tenure", "", "blank is not allowed"),
    ("MonthlyCharges", "NaN", "expected a number, got 'NaN'"),  # as ingest reads a cell
    ("tenure", "1_0", "expected a number, got '1_0'"),  # Python's float reads 10; ingest does not
    ("MonthlyCharges", "inf", "expected a finite number within float32's range"),
    ("MonthlyCharges", "1e39", "expected a finite number within float32's range"),
]


@pytest.mark.parametrize("column, text, expected", NUMBER_TEXT, ids=[f"{c}={t!r}" for c, t, _ in NUMBER_TEXT])
def test_numbers_as_bytes_text_in_v2_get_what_v1_gives_a_string(logged, loaded, rows, column, text, expected):
    url, _ = logged
    one = features_of(rows.head(1))
    record = records_of(one)[0]
    v1 = httpx.post(url + V1, json={"instances": [{**record, column: text}]})
    tensors = [dict(t, datatype="BYTES", data=[text]) if t["name"] == column else t
               for t in v2_tensors(loaded, one, False)]
    v2 = httpx.post(url + V2, json={"inputs": tensors})
    if isinstance(expected, str):
        assert (v1.status_code, v2.status_code) == (400, 400), (v1.text, v2.text)
        assert v1.json()["error"].startswith(f"instances[0].{column}: {expected}"), v1.json()["error"]
        assert v2.json()["error"] == v1.json()["error"].replace("instances[0]", "inputs[0]", 1)
        return
    assert (v1.status_code, v2.status_code) == (200, 200), (v1.text, v2.text)
    probability = float(loaded.predict(one.assign(**{column: expected}))[0])
    assert v1.json()["predictions"][0]["probability"] == pytest.approx(probability, abs=1e-7)
    assert v2.json()["outputs"][0]["data"] == [v1.json()["predictions"][0]["probability"]]
