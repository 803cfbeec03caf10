"""v1 and v2 over real HTTP on loopback, with httpx and tritonclient; answers equal in-process ones."""

import json
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from scipy.special import expit, logit

from serving_helpers import CARD_COMPONENTS, MAX_BATCH, MAX_EXPLAIN_ROWS, column_tensors, records_of
from flowline.package.format import verify
from flowline.inference_services.local_server import running_server
from flowline.inference_services.model import LoadedPackage

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

NUMERIC = {"integer": ("INT64", np.int64), "number": ("FP64", np.float64)}


@pytest.fixture(scope="module")
def loaded(churn_package) -> LoadedPackage:
    return LoadedPackage.load(churn_package)


@pytest.fixture(scope="module")
def expected(loaded, churn_test_rows) -> np.ndarray:
    return loaded.predict(churn_test_rows)


def test_the_served_model_is_a_blend_of_families(loaded):
    """So that every protocol test below checks an ensemble against its in-process prediction."""
    assert len(loaded.model.members) >= 2 and len(set(loaded.model.families)) == len(loaded.model.members)


def test_v1_predictions_equal_in_process_predictions(server, churn_package, churn_test_rows, expected, loaded):
    response = httpx.post(f"{server}/v1/models/churn:predict", json={"instances": records_of(churn_test_rows)})
    assert response.status_code == 200, response.text
    body = response.json()
    probabilities = np.array([p["probability"] for p in body["predictions"]], dtype=np.float32)
    assert np.array_equal(probabilities, expected)
    assert [p["decision"] for p in body["predictions"]] == loaded.labels(loaded.decide_frame(churn_test_rows))
    assert body["model_version"] == verify(churn_package)["version"] and body["decision_rule"] == "per-group thresholds"
    assert [p["threshold"] for p in body["predictions"]] == loaded.row_thresholds(len(churn_test_rows),
                                                                                 records_of(churn_test_rows)).tolist()


def test_v2_column_tensors_equal_in_process_predictions(server, churn_test_rows, expected, loaded):
    complete = churn_test_rows.dropna()  # JSON tensors cannot carry null
    response = httpx.post(f"{server}/v2/models/churn/infer", json={"inputs": column_tensors(loaded.use_case, complete, loaded.feature_set.input_columns)})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert np.array_equal(np.array(outputs["probability"]["data"], dtype=np.float32), loaded.predict(complete))
    assert outputs["decision"]["datatype"] == "BYTES" and response.json()["model_version"] == loaded.version


def test_v2_encoded_feature_matrix_with_the_mitigations_attribute(server, churn_test_rows, expected, loaded):
    matrix = loaded.feature_set.transform(churn_test_rows)
    features = {"name": "features", "shape": list(matrix.shape), "datatype": "FP32", "data": matrix.ravel().tolist()}
    # The churn package decides with per-group thresholds on SeniorCitizen: its group travels beside the matrix.
    assert loaded.mitigation.attributes == ("SeniorCitizen",)
    senior = {"name": "SeniorCitizen", "shape": [len(matrix)], "datatype": "INT64",
              "data": churn_test_rows["SeniorCitizen"].astype(int).tolist()}
    response = httpx.post(f"{server}/v2/models/churn/infer", json={"inputs": [features, senior]})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert np.array_equal(np.array(outputs["probability"], dtype=np.float32), expected)
    assert outputs["decision"] == loaded.labels(loaded.decide_frame(churn_test_rows))
    alone = httpx.post(f"{server}/v2/models/churn/infer", json={"inputs": [features]})
    assert alone.status_code == 400 and "missing input 'SeniorCitizen'" in alone.json()["error"]


def test_served_decisions_are_the_bias_steps_mitigated_decisions(server, churn_package, churn_test_rows, loaded):
    """The per-group thresholds the bias step judged are the ones served, row for row."""
    import json
    from pathlib import Path

    from flowline.components.bias.fairness import decision_outcomes

    evaluation = json.loads((Path(churn_package) / "evaluation.json").read_text())
    test = pd.read_parquet(Path(churn_package).parent / "test")  # every test row the bias step judged
    rows = test[loaded.use_case.feature_columns]
    served = []
    for start in range(0, len(rows), MAX_BATCH):
        response = httpx.post(f"{server}/v1/models/churn:predict",
                              json={"instances": records_of(rows.iloc[start:start + MAX_BATCH])})
        served += [p["decision"] == "Yes" for p in response.json()["predictions"]]
    served = np.array(served)
    y = loaded.feature_set.labels(test)
    assert decision_outcomes(y, served, loaded.use_case.costs) == evaluation["fairness"]["mitigated"]["test"]["outcomes"]
    scores = loaded.predict(rows)
    assert np.array_equal(served, scores >= loaded.row_thresholds(len(rows), records_of(rows)))
    assert (served != (scores >= loaded.threshold)).sum() > 10  # the mitigation is live, not the single threshold


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_gets_the_same_answers(server, churn_test_rows, loaded, binary: bool):
    complete = churn_test_rows.dropna()
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    inputs = []
    for column in loaded.feature_set.input_columns:
        spec = loaded.use_case.columns[column]
        datatype, dtype = NUMERIC.get(spec.type, ("BYTES", object))
        tensor = triton.InferInput(column, [len(complete)], datatype)
        tensor.set_data_from_numpy(complete[column].to_numpy().astype(dtype), binary_data=binary)
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probability", "decision")]
    # tritonclient's JSON mode needs the content type said explicitly (DESIGN.md).
    headers = None if binary else {"Content-Type": "application/json"}
    result = client.infer("churn", inputs, outputs=outputs, headers=headers)
    assert np.array_equal(result.as_numpy("probability"), loaded.predict(complete))
    decisions = [d.decode() if isinstance(d, bytes) else d for d in result.as_numpy("decision")]
    assert decisions == loaded.labels(loaded.decide_frame(complete))
    assert client.get_model_metadata("churn")["inputs"][0]["name"] == loaded.feature_set.input_columns[0]


def test_shap_contributions_add_up_to_the_margin(server, churn_test_rows, loaded):
    response = httpx.post(f"{server}/v1/models/churn:explain", json={"instances": records_of(churn_test_rows.head(10))})
    assert response.status_code == 200, response.text
    explanations = response.json()["explanations"]
    margins = loaded.model.margin(loaded.feature_set.transform(churn_test_rows.head(10)))
    for explanation, margin in zip(explanations, margins):
        assert set(explanation["contributions"]) == set(loaded.feature_set.input_columns)
        total = sum(explanation["contributions"].values()) + explanation["base_value"]
        assert total == pytest.approx(float(margin), abs=1e-4)
        assert explanation["margin"] == pytest.approx(float(margin), abs=1e-6)
    assert expit(explanations[0]["margin"]) == pytest.approx(float(loaded.predict(churn_test_rows.head(1))[0]), abs=1e-6)


def test_an_explanation_says_what_it_explains_as_predict_answered_it(server, churn_test_rows, clv):
    """An explanation gave a margin and contributions but not the probability, decision and threshold they lead
    to. Churn serves per-group thresholds (its fairness mitigation): each explained row carries the answer predict
    gives the same row, the threshold of its group included; CLV's carry the prediction and the segment."""
    records = records_of(churn_test_rows)
    explained = httpx.post(f"{server}/v1/models/churn:explain", json={"instances": records}).json()
    predicted = httpx.post(f"{server}/v1/models/churn:predict", json={"instances": records}).json()
    assert explained["decision_rule"] == predicted["decision_rule"] != "single threshold"
    fields = ("probability", "decision", "threshold")
    assert [{k: e[k] for k in fields} for e in explained["explanations"]] == \
        [{k: p[k] for k in fields} for p in predicted["predictions"]]
    assert len({e["threshold"] for e in explained["explanations"]}) > 1  # several groups' thresholds
    # The line the margin must reach, in its units: the base value is no such line (a reviewer read contributions
    # summing below zero as "not flagged" on 48 of 144 flagged card transactions).
    for explanation in explained["explanations"]:
        assert explanation["threshold_margin"] == pytest.approx(logit(explanation["threshold"]), abs=1e-9)
        if abs(explanation["margin"] - explanation["threshold_margin"]) > 1e-5:  # beyond float32's rounding
            assert (explanation["decision"] == "Yes") == (explanation["margin"] > explanation["threshold_margin"])
    assert "threshold_margin" not in httpx.post(f"{server}/v1/models/clv:explain", json={
        "instances": records_of(clv[1].head(1))}).json()["explanations"][0]
    customers = records_of(clv[1].head(20))
    explained = httpx.post(f"{server}/v1/models/clv:explain", json={"instances": customers}).json()
    predicted = httpx.post(f"{server}/v1/models/clv:predict", json={"instances": customers}).json()
    assert [(e["prediction"], e["segment"]) for e in explained["explanations"]] == \
        [(p["prediction"], p["segment"]) for p in predicted["predictions"]]


def test_explain_answers_with_its_own_headers_never_the_request_s(server, churn_test_rows):
    """KServe's explain began its answer's headers with the request's: a client's credentials came back, and a
    chunked request got both framings (RFC 9112 6.2), which Node's HTTP client refuses."""
    url = f"{server}/v1/models/churn:explain"
    body = json.dumps({"instances": records_of(churn_test_rows.head(2))}).encode()
    sent = {"Authorization": "Bearer not-for-the-answer", "Cookie": "session=abc",
            "Content-Type": "application/octet-stream"}
    for content in (body, iter([body])):  # a length, then chunks (a body of unknown length)
        response = httpx.post(url, content=content, headers=sent)
        assert response.status_code == 200, response.text
        assert not {"authorization", "cookie"} & set(response.headers)
        assert response.headers["content-type"] == "application/json"
        assert not {"transfer-encoding", "content-length"} <= set(response.headers)
        assert len(response.json()["explanations"]) == 2


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON",
                                          "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"])
def test_v1_takes_its_json_body_whatever_the_content_type_says(server, churn_test_rows, expected, content_type):
    """.NET and OkHttp send a charset, a browser's fetch text/plain, curl -d a form type: a v1 body is JSON."""
    body = json.dumps({"instances": records_of(churn_test_rows)}).encode()
    predicted = httpx.post(f"{server}/v1/models/churn:predict", content=body, headers={"Content-Type": content_type})
    assert predicted.status_code == 200, predicted.text
    assert np.array_equal(np.array([p["probability"] for p in predicted.json()["predictions"]], np.float32), expected)
    explained = httpx.post(f"{server}/v1/models/churn:explain", content=body, headers={"Content-Type": content_type})
    assert explained.status_code == 200, explained.text


def test_an_unknown_v2_output_is_refused_before_anything_is_scored_or_counted(server, churn_test_rows, loaded):
    """An `outputs` name the answer would not have is a 400 naming it, sent before scoring: not a prediction
    counted, logged or (with entity features) stored as served, which the client's corrected retry would repeat."""
    complete = churn_test_rows.dropna().head(3)
    inputs = column_tensors(loaded.use_case, complete, loaded.feature_set.input_columns)
    predictions = f'flowline_predictions_total{{decision="positive",model_name="churn",model_version="{loaded.version}"}}'

    def counted() -> float:
        lines = [line for line in httpx.get(f"{server}/metrics").text.splitlines() if line.startswith(predictions)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines)

    httpx.post(f"{server}/v2/models/churn/infer", json={"inputs": inputs})  # so the series exists
    before = counted()
    refused = httpx.post(f"{server}/v2/models/churn/infer",
                         json={"inputs": inputs, "outputs": [{"name": "decision"}, {"name": "probabilty"}]})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("outputs[1].name: 'probabilty' is not an output of this model; expected "
                                              "one of ['probability', 'decision', 'threshold']")
    assert counted() == before
    answered = httpx.post(f"{server}/v2/models/churn/infer", json={"inputs": inputs, "outputs": [{"name": "decision"}]})
    assert answered.status_code == 200 and [o["name"] for o in answered.json()["outputs"]] == ["decision"]


def test_versioned_urls_answer_for_the_version_served_and_404_for_another(server, churn_test_rows, loaded):
    """KServe answered 501 to a versioned metadata or ready URL (tritonclient's is_model_ready(name, version) stayed
    False), and a versioned infer took any version, answering with another."""
    version, url = loaded.version, f"{server}/v2/models/churn/versions"
    assert httpx.get(f"{server}/v2/models/churn").json()["versions"] == [version]
    metadata = httpx.get(f"{url}/{version}")
    assert metadata.status_code == 200 and [i["name"] for i in metadata.json()["inputs"]] == loaded.feature_set.input_columns
    assert httpx.get(f"{url}/{version}/ready").json() == {"name": "churn", "ready": True}
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_model_ready("churn", version) and not client.is_model_ready("churn", "000000000000")
    inputs = column_tensors(loaded.use_case, churn_test_rows.dropna().head(2), loaded.feature_set.input_columns)
    answered = httpx.post(f"{url}/{version}/infer", json={"inputs": inputs})
    assert answered.status_code == 200 and answered.json()["model_version"] == version
    for path, method in [("000000000000", "GET"), ("000000000000/ready", "GET"), ("000000000000/infer", "POST")]:
        refused = httpx.request(method, f"{url}/{path}", json={"inputs": inputs} if method == "POST" else None)
        assert refused.status_code == 404 and "churn version 000000000000" in refused.json()["error"], path


def test_metadata_health_and_readiness(server, loaded):
    metadata = httpx.get(f"{server}/v2/models/churn").json()
    assert [i["name"] for i in metadata["inputs"]] == loaded.feature_set.input_columns
    datatypes = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    assert datatypes["tenure"] == "INT64" and datatypes["MonthlyCharges"] == "FP64" and datatypes["Contract"] == "BYTES"
    assert [o["name"] for o in metadata["outputs"]] == ["probability", "decision", "threshold"]
    assert httpx.get(f"{server}/v2/health/live").json() == {"live": True}
    # No repository token here: load and unload do not answer, so the extension is not offered.
    assert httpx.get(f"{server}/v2").json()["extensions"] == []
    for method, path, status, said in [("GET", "/v2/models/churn/infer", 405, "Method Not Allowed"),
                                       ("POST", "/v2/repository/index", 404, "Not Found"),
                                       ("GET", "/openapi.json", 404, "Not Found")]:  # every route, to whoever asked
        answer = httpx.request(method, f"{server}{path}")  # the protocol's error body, which tritonclient reads
        assert (answer.status_code, answer.json()) == (status, {"error": said}), path
    assert httpx.get(f"{server}/v2/models/churn/ready").status_code == 200
    assert httpx.get(f"{server}/v1/models/churn").json() == {"name": "churn", "ready": True}


def test_one_process_serves_several_models_by_name(server, card_package):
    assert set(httpx.get(f"{server}/v2/models").json()["models"]) == {"churn", "card-fraud", "clv"}
    row = {"Time": 10.0, "Amount": 12.5, **{f"V{i}": 0.1 for i in range(1, CARD_COMPONENTS + 1)}}
    response = httpx.post(f"{server}/v1/models/card-fraud:predict", json={"instances": [row]})
    assert response.status_code == 200 and response.json()["model_version"] == verify(card_package)["version"]
    assert response.json()["predictions"][0]["decision"] in ("0", "1")


def test_prometheus_metrics_count_decisions_latency_and_refusals(server, churn_test_rows, loaded):
    httpx.post(f"{server}/v1/models/churn:predict", json={"instances": records_of(churn_test_rows)})
    httpx.post(f"{server}/v1/models/churn:predict", json={"instances": []})
    text = httpx.get(f"{server}/metrics").text
    version = loaded.version
    assert f'flowline_predictions_total{{decision="positive",model_name="churn",model_version="{version}"}}' in text
    assert f'flowline_request_latency_seconds_bucket{{le="0.01",model_name="churn",model_version="{version}"}}' in text
    assert 'flowline_invalid_inputs_total{model_name="churn",reason="empty_batch"}' in text
    assert f'flowline_http_requests_total{{code="200",model_name="churn",model_version="{version}"}}' in text
    assert f'flowline_http_requests_total{{code="400",model_name="churn",model_version="{version}"}}' in text
    assert (f'flowline_model_info{{model_name="churn",model_version="{version}",task="binary",use_case="churn"}} 1.0'
            in text)
    roc_auc = loaded.evaluation["metrics"]["roc_auc"]
    assert f'flowline_model_quality{{metric="roc_auc",model_name="churn",model_version="{version}"}} {roc_auc!r}' in text
    assert f'flowline_model_gates_passed{{model_name="churn",model_version="{version}"}} 1.0' in text
    created = next(line for line in text.splitlines() if line.startswith("flowline_model_created_timestamp_seconds{"))
    assert f'model_version="{version}"' in created and float(created.rsplit(" ", 1)[1]) == loaded.created_at
    assert "request_predict_seconds" in text  # KServe's own metrics are there too


@pytest.fixture(scope="module")
def clv(clv_package):
    """The CLV package and some customers at the end of calibration, as an application would send them."""
    loaded = LoadedPackage.load(clv_package)
    customers = pd.read_parquet(clv_package.parent / "test").sample(60, random_state=0)
    return loaded, customers[loaded.feature_set.input_columns]


def test_clv_answers_each_customers_value_and_segment_over_v1_and_v2(server, clv):
    loaded, customers = clv
    expected = loaded.predict(customers)
    response = httpx.post(f"{server}/v1/models/clv:predict", json={"instances": records_of(customers)})
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert np.array_equal(np.array([a["prediction"] for a in answers], dtype=np.float32), expected)
    assert [a["segment"] for a in answers] == loaded.segments(expected)
    assert {"high", "low"} <= {a["segment"] for a in answers} and (expected >= 0).all()
    response = httpx.post(f"{server}/v2/models/clv/infer", json={"inputs": column_tensors(loaded.use_case, customers, loaded.feature_set.input_columns)})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert np.array_equal(np.array(outputs["prediction"], dtype=np.float32), expected)
    assert outputs["segment"] == loaded.segments(expected)
    metadata = httpx.get(f"{server}/v2/models/clv").json()
    assert [o["name"] for o in metadata["outputs"]] == ["prediction", "segment"]


def test_clv_segments_are_the_deciles_evaluate_measured(clv):
    loaded, _ = clv
    deciles = loaded.evaluation["deciles"]
    top = deciles["table"][-1]
    # The top decile of predicted value holds far more than a tenth of the actual holdout spend.
    assert top["share_of_actual"] > 0.3 and top["mean_actual"] > deciles["table"][0]["mean_actual"]
    assert loaded.segments(np.array([deciles["edges"][-1] + 1.0, -1.0])) == ["high", "low"]


def test_clv_explanations_add_up_to_the_predicted_value(server, clv):
    loaded, customers = clv
    response = httpx.post(f"{server}/v1/models/clv:explain", json={"instances": records_of(customers.head(5))})
    assert response.status_code == 200, response.text
    for explanation, value in zip(response.json()["explanations"], loaded.predict(customers.head(5))):
        total = explanation["base_value"] + sum(explanation["contributions"].values()) + explanation["floor_adjustment"]
        assert total == pytest.approx(float(value), rel=1e-4, abs=1e-3)


def test_a_clv_value_clipped_at_zero_is_explained_with_the_clip_as_its_own_term(server, clv_package):
    """The floor at 0 was folded into a per-row base value: a clipped customer's base value was no longer the
    model's expected value. It stays that on every row, and the clip is answered as `floor_adjustment`."""
    loaded = LoadedPackage.load(clv_package)
    assert loaded.model.floor == 0.0
    rows = pd.read_parquet(clv_package.parent / "test")[loaded.feature_set.input_columns].head(200)
    variants = [rows]  # customers as they are, then each with one column far above its usual values
    for column in rows.columns:
        variants.append(rows.head(20).assign(**{column: rows[column].max() * 20}))
    candidates = pd.concat(variants, ignore_index=True)
    unclipped = loaded.model.contributions(loaded.feature_set.transform(candidates)).sum(axis=1)
    clipped = candidates[unclipped < 0].head(MAX_EXPLAIN_ROWS - 1)
    assert len(clipped), "no customer the model predicts below zero"
    sent = pd.concat([clipped, candidates[unclipped > 1].head(1)])
    response = httpx.post(f"{server}/v1/models/clv:explain", json={"instances": records_of(sent)})
    assert response.status_code == 200, response.text
    explained = response.json()["explanations"]
    served = loaded.predict(sent)
    expected_value = loaded.model.contributions(loaded.feature_set.transform(sent))[0, -1]
    for explanation, value, below in zip(explained, served, unclipped[sent.index]):
        assert explanation["base_value"] == pytest.approx(expected_value, abs=1e-6)  # the same on every row
        assert explanation["margin"] == pytest.approx(float(value), abs=1e-6)
        assert explanation["floor_adjustment"] == pytest.approx(max(0.0, -below), abs=1e-4)
        total = explanation["base_value"] + sum(explanation["contributions"].values()) + explanation["floor_adjustment"]
        assert total == pytest.approx(float(value), abs=1e-3)
    assert explained[0]["margin"] == 0.0 and explained[0]["floor_adjustment"] > 0
    assert explained[-1]["floor_adjustment"] == 0.0


def test_a_clv_request_with_a_bad_field_is_a_400_naming_it(server, clv):
    _, customers = clv
    record = records_of(customers.head(1))[0]
    record["amount_last_4w"] = "lots"
    response = httpx.post(f"{server}/v1/models/clv:predict", json={"instances": [record]})
    assert response.status_code == 400 and "amount_last_4w" in response.text


def test_a_large_explain_does_not_hold_up_the_workers_other_requests(churn_package, tmp_path):
    """1,024 rows of churn's explanations take seconds (with --max-explain-rows 1024; the default is 64); computed on
    the event loop, they held up every request the worker had meanwhile. A predict sent while one computes is
    answered before it."""
    use_case = json.loads((churn_package / "use_case.json").read_text())
    rows = pd.read_parquet(churn_package.parent / "test").head(1024)
    records = records_of(rows[[c for c in rows.columns if c != use_case["label"]["column"]]])
    with running_server([f"churn={churn_package}"], workers=1, log_path=str(tmp_path / "server.log"),
                        extra_args=["--max-explain-rows", "1024"]) as url:
        finished: dict[str, float] = {}

        def explain() -> None:
            answer = httpx.post(url + "/v1/models/churn:explain", json={"instances": records}, timeout=300)
            assert answer.status_code == 200 and len(answer.json()["explanations"]) == 1024
            finished["explain"] = time.monotonic()

        explaining = threading.Thread(target=explain)
        explaining.start()
        time.sleep(0.5)  # the explain is being read and computed
        answered = []
        while "explain" not in finished and explaining.is_alive():
            assert httpx.post(url + "/v1/models/churn:predict", json={"instances": records[:1]},
                              timeout=300).status_code == 200
            answered.append(time.monotonic())
        explaining.join()
    assert "explain" in finished
    # one predict at a time: held up, at most the one waiting could come back before the explain's answer is read
    assert sum(at < finished["explain"] for at in answered) >= 2


def test_a_structured_mode_cloudevent_is_refused_saying_how_to_send_it(server, churn_test_rows):
    """A structured-mode CloudEvent that KServe does not take for one (no `time`) was refused as a body without
    'instances'; one with every attribute KServe looks for is answered."""
    event = {"specversion": "1.0", "id": "1", "source": "test", "type": "org.kubeflow.serving.inference.request",
             "datacontenttype": "application/json", "data": {"instances": records_of(churn_test_rows.head(1))}}
    answer = httpx.post(f"{server}/v1/models/churn:predict", content=json.dumps(event),
                        headers={"content-type": "application/cloudevents+json"}, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"] == ("body: a structured-mode CloudEvent without time: KServe reads one that has "
                                      "all of specversion, id, source, type, time, data; or send binary mode (ce-* "
                                      "headers, the data as the body)")
    timed = httpx.post(f"{server}/v1/models/churn:predict", content=json.dumps({**event, "time": "2026-12-07T08:00:00Z"}),
                       headers={"content-type": "application/cloudevents+json"}, timeout=30)
    assert timed.status_code == 200, timed.text
