"""The lean route answers a ready FlowlineModel's v2 infer and v1 predict itself, exactly as the FastAPI routes
would, and hands everything else on: driven over ASGI with a real model and data plane, FastAPI replaced by an
app that only says it was reached (the live protocol, fuzz and worker tests go through the whole server)."""

import asyncio
import json

import httpx
import numpy as np
import pytest
from kserve.model_repository import ModelRepository
from prometheus_client import REGISTRY
from starlette.responses import PlainTextResponse

from flowline.inference_services.model import FlowlineModel
from flowline.inference_services.model_route import ModelRoute, with_model_route
from flowline.inference_services.server import FlowlineDataPlane, _refused
from flowline.pipelines.demo import v2_request
from serving_helpers import records_of

FALLBACK = "reached the app behind"
CLOUDEVENT = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "test", "ce-type": "org.kubeflow.serving.inference.request"}


async def behind(scope, receive, send) -> None:
    await PlainTextResponse(FALLBACK, status_code=299)(scope, receive, send)


@pytest.fixture(scope="module")
def churn_model(churn_package) -> FlowlineModel:
    model = FlowlineModel("churn", churn_package, batch_wait_ms=0)
    model.load()
    return model


def post(app, path: str, body: bytes, headers: dict | None = None, method: str = "POST") -> httpx.Response:
    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, content=body,
                                        headers={"content-type": "application/json", **(headers or {})})
    return asyncio.run(send())


def requests_counted(version: str, code: str) -> float:
    labels = {"model_name": "churn", "model_version": version, "code": code}
    return REGISTRY.get_sample_value("flowline_http_requests_total", labels) or 0.0


def test_v2_and_v1_answers_are_the_models_counted_and_named_by_worker(churn_model, churn_test_rows):
    route = ModelRoute(behind, {"churn": churn_model}, FlowlineDataPlane(model_registry=ModelRepository()), _refused, "7")
    rows = churn_test_rows.dropna().head(3)
    expected = churn_model.package.predict(rows)
    version = churn_model.package.version
    before = requests_counted(version, "200")
    body = json.dumps(v2_request(records_of(rows.head(1))[0], {"inputs": churn_model.get_input_types()})).encode()
    for path in ("/v2/models/churn/infer", f"/v2/models/churn/versions/{version}/infer"):
        answer = post(route, path, body)
        assert answer.status_code == 200 and answer.headers["x-flowline-worker"] == "7", answer.text
        assert answer.json()["outputs"][0]["data"] == [float(expected[0])]
    answer = post(route, "/v1/models/churn:predict", json.dumps({"instances": records_of(rows)}).encode())
    assert answer.status_code == 200, answer.text
    assert np.array_equal(np.float32([p["probability"] for p in answer.json()["predictions"]]), expected)
    assert requests_counted(version, "200") == before + 3


def test_a_bad_request_is_the_servers_400_naming_the_field_and_counted(churn_model):
    route = ModelRoute(behind, {"churn": churn_model}, FlowlineDataPlane(model_registry=ModelRepository()), _refused)
    before = requests_counted(churn_model.package.version, "400")
    answer = post(route, "/v2/models/churn/infer", b'{"inputs": [{"name": 3}]}')
    assert answer.status_code == 400 and "name" in answer.json()["error"], answer.text
    answer = post(route, "/v1/models/churn:predict", b'{"instances": [{"tenure": "Infinity"}]}')
    assert answer.status_code == 400 and "instances[0]" in answer.json()["error"], answer.text
    assert requests_counted(churn_model.package.version, "400") == before + 2


@pytest.mark.parametrize("path, headers, method", [
    ("/v1/models/churn:predict", CLOUDEVENT, "POST"),  # KServe answers a CloudEvent with one
    ("/v1/models/churn:predict", {"content-type": "application/cloudevents+json"}, "POST"),
    ("/v1/models/churn:explain", {}, "POST"),
    ("/v2/models/other/infer", {}, "POST"),  # FastAPI's 404
    ("/v2/models/churn/infer", {}, "GET"),
    ("/v2/models/churn/ready", {}, "POST"),
])
def test_everything_else_goes_on_to_the_app_behind(churn_model, path, headers, method):
    route = ModelRoute(behind, {"churn": churn_model}, FlowlineDataPlane(model_registry=ModelRepository()), _refused)
    answer = post(route, path, b'{"instances": []}', headers, method)
    assert (answer.status_code, answer.text) == (299, FALLBACK)


def test_a_model_out_of_service_is_left_to_the_app_behind(churn_package):
    model = FlowlineModel("churn", churn_package, batch_wait_ms=0)
    model.load()
    route = ModelRoute(behind, {"churn": model}, FlowlineDataPlane(model_registry=ModelRepository()), _refused)
    model.ready = False  # unloaded: FastAPI's route answers 503
    assert post(route, "/v2/models/churn/infer", b"{}").status_code == 299


def test_without_a_flowline_model_there_is_no_route(churn_model):
    assert with_model_route(behind, {}, FlowlineDataPlane(model_registry=ModelRepository()), _refused) is behind
    assert isinstance(with_model_route(behind, {"churn": churn_model}, None, _refused), ModelRoute)


def test_many_inputs_of_unknown_names_are_refused_without_comparing_tensors_pairwise(churn_model, monkeypatch):
    """8,000 inputs of unknown names held the event loop, health checks too, 9 s before their 400: each was
    compared with the others by InferInput.__eq__, quadratic in their count. Now no tensor is compared."""
    from kserve.protocol.infer_type import InferInput

    def compared(self, other):
        raise AssertionError("tensors compared with InferInput.__eq__")

    monkeypatch.setattr(InferInput, "__eq__", compared)
    route = ModelRoute(behind, {"churn": churn_model}, FlowlineDataPlane(model_registry=ModelRepository()), _refused, "7")
    inputs = [{"name": f"c{index}", "shape": [1], "datatype": "FP64", "data": [1.0]} for index in range(2000)]
    answer = post(route, "/v2/models/churn/infer", json.dumps({"inputs": inputs}).encode())
    assert answer.status_code == 400 and "unknown input 'c0'" in answer.json()["error"], answer.text
