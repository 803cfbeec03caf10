"""Both ServingRuntimes of the prod overlay, run with podman exactly as their container specs say.

The package is mounted read-only at /mnt/models, as KServe's storage initializer leaves it, and
{{.Name}} is the InferenceService's name. Then real requests: v2 infer, v1 predict and explain,
/metrics and the declared probes; the drift monitor takes payload-logger CloudEvents.
"""

from __future__ import annotations

import concurrent.futures
import copy
import time
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowline.inference_services.local_server import free_port
from flowline.use_case import UseCase
from manifest_helpers import find, one, render
from pods import command_of, logs, memory_peak_bytes, podman_run_args, quantity, record, run_detached, state, stop
from serving_helpers import column_tensors, records_of

pytestmark = [pytest.mark.xdist_group("containers"), pytest.mark.pipeline]

READY_TIMEOUT_S = 180
BURST_REQUESTS = 400
BURST_CONNECTIONS = 16


def pod_container(docs: list[dict], runtime: str, service: str) -> tuple[dict, dict[str, dict]]:
    """The ServingRuntime's container as KServe runs it for `service`: the InferenceService's model
    resources and securityContext over the runtime's; and the pod's volumes by name."""
    spec = one(docs, "ServingRuntime", runtime)["spec"]
    container = copy.deepcopy(spec["containers"][0])
    model = next(doc["spec"]["predictor"]["model"] for doc in find(docs, "InferenceService", service))
    container.update({key: model[key] for key in ("resources", "securityContext") if key in model})
    return container, {volume["name"]: volume for volume in spec.get("volumes", [])}


@pytest.fixture(scope="module")
def prod() -> list[dict]:
    return render("overlays/prod")


def start_pod(image: str, container: dict, volumes: dict, service: str, package: Path) -> tuple[str, str]:
    """Run the container as the pod would; returns its id and the base URL of its published port."""
    port = container["ports"][0]["containerPort"]
    host_port = free_port()
    options = [*podman_run_args(container, volumes, f"{service}-{uuid.uuid4().hex[:8]}"),
               "--volume", f"{package}:/mnt/models:ro", "--publish", f"127.0.0.1:{host_port}:{port}"]
    assert container["image"].startswith(image.rsplit(":", 1)[0] + ":")
    return run_detached(image, options, command_of(container, {"{{.Name}}": service})), f"http://127.0.0.1:{host_port}"


def wait_for_probe(client: httpx.Client, container_id: str, probe: dict) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not state(container_id)["Running"]:
            raise AssertionError(f"the container exited:\n{logs(container_id)[-4000:]}")
        try:
            if client.get(probe["httpGet"]["path"]).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"{probe['httpGet']['path']} not ready in {READY_TIMEOUT_S} s:\n{logs(container_id)[-4000:]}")


@pytest.fixture(scope="module")
def test_rows(churn_in_image, package_in_image) -> pd.DataFrame:
    use_case = UseCase.model_validate_json((package_in_image / "use_case.json").read_text())
    split = next(Path(churn_in_image["run_dir"]).glob("*/split/test"))
    return pd.read_parquet(split)[use_case.feature_columns]


@pytest.fixture(scope="module")
def model_server(flowline_image, prod, package_in_image):
    container, volumes = pod_container(prod, "flowline", "churn")
    container_id, url = start_pod(flowline_image, container, volumes, "churn", package_in_image)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_for_probe(client, container_id, container["readinessProbe"])
            yield container, container_id, client
    finally:
        stop(container_id)


def test_the_model_server_pod_answers_every_protocol(model_server, test_rows, package_in_image):
    container, _, client = model_server
    for probe in ("readinessProbe", "livenessProbe"):
        assert client.get(container[probe]["httpGet"]["path"]).status_code == 200, probe
    records = records_of(test_rows.head(3))
    v1 = client.post("/v1/models/churn:predict", json={"instances": records})
    assert v1.status_code == 200, v1.text
    predictions = v1.json()["predictions"]
    assert len(predictions) == 3 and all(0 <= p["probability"] <= 1 for p in predictions)
    use_case = UseCase.model_validate_json((package_in_image / "use_case.json").read_text())
    complete = test_rows.dropna().head(3)  # JSON tensors cannot carry null
    inputs = column_tensors(use_case, complete, complete.columns)
    v2 = client.post("/v2/models/churn/infer", json={"inputs": inputs})
    assert v2.status_code == 200, v2.text
    probabilities = next(o["data"] for o in v2.json()["outputs"] if o["name"] == "probability")
    expected = client.post("/v1/models/churn:predict", json={"instances": records_of(complete)})
    assert probabilities == pytest.approx([p["probability"] for p in expected.json()["predictions"]], abs=1e-6)
    explained = client.post("/v1/models/churn:explain", json={"instances": records[:1]})
    assert explained.status_code == 200, explained.text
    assert explained.json()["explanations"][0]["contributions"]
    metrics = client.get("/metrics").text
    assert "flowline_request_latency_seconds_count" in metrics


def test_the_model_server_stays_within_its_memory_limit_under_a_burst(model_server, test_rows):
    container, container_id, client = model_server
    records = records_of(test_rows.head(BURST_CONNECTIONS * 4))
    base_url = str(client.base_url)

    def call(index: int) -> int:
        with httpx.Client(base_url=base_url, timeout=60) as own:
            return own.post("/v1/models/churn:predict", json={"instances": [records[index % len(records)]]}).status_code

    with concurrent.futures.ThreadPoolExecutor(BURST_CONNECTIONS) as pool:
        statuses = list(pool.map(call, range(BURST_REQUESTS)))
    assert statuses.count(200) == BURST_REQUESTS
    limit = quantity(container["resources"]["limits"]["memory"])
    scraped = {family.name: [sample.value for sample in family.samples]
               for family in text_string_to_metric_families(client.get("/metrics").text)}
    peak = memory_peak_bytes(container_id)
    working_set, resident = scraped["flowline_memory_working_set_bytes"], scraped["process_resident_memory_bytes"]
    record("model_server_peak_memory_bytes", {"peak": peak, "limit": limit, "requests": BURST_REQUESTS,
                                              "working_set": working_set[0], "resident_by_worker": resident})
    assert peak < limit and state(container_id)["Running"] and not state(container_id)["OOMKilled"]
    # The memory alert's two series, read from the container's own cgroup: the pod's limit, and a working set
    # that the cgroup's peak usage bounds.
    assert scraped["flowline_memory_limit_bytes"] == [limit]
    assert len(working_set) == 1 and 0 < working_set[0] <= peak
    assert client.get(container["livenessProbe"]["httpGet"]["path"]).status_code == 200


def event_headers() -> dict:
    return {"ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.request", "ce-source": "churn",
            "ce-id": str(uuid.uuid4()), "ce-inferenceservicename": "churn", "content-type": "application/json"}


def test_the_drift_monitor_pod_flags_a_shifted_window(flowline_image, prod, package_in_image, test_rows):
    container, volumes = pod_container(prod, "flowline-drift", "churn-drift")
    container_id, url = start_pod(flowline_image, container, volumes, "churn-drift", package_in_image)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            wait_for_probe(client, container_id, container["readinessProbe"])
            assert client.get(container["livenessProbe"]["httpGet"]["path"]).status_code == 200
            window = client.post("/v1/models/churn-drift:predict", json={"instances": records_of(test_rows.head(1))},
                                 headers=event_headers())
            assert window.status_code == 200, window.text
            size = window.json()["window_size"]
            shifted = test_rows.sample(size, replace=len(test_rows) < size, random_state=3).copy()
            shifted["MonthlyCharges"] *= 1.3
            tests = []
            for start in range(0, size, 20):
                answer = client.post("/v1/models/churn-drift:predict", headers=event_headers(),
                                     json={"instances": records_of(shifted.iloc[start:start + 20])})
                assert answer.status_code == 200, answer.text
                tests += answer.json()["tests"]
            metrics = client.get("/metrics").text
    finally:
        stop(container_id)
    assert tests and tests[-1]["is_drift"]
    assert min(tests[-1]["p_values"], key=tests[-1]["p_values"].get) == "MonthlyCharges"
    assert 'flowline_drift_tests_total{model_name="churn",result="drift"}' in metrics
