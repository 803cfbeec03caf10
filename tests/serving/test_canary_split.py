"""Local A/B: one model name served by two package versions, split by request id, every answer logged."""

import json
from pathlib import Path

import httpx
import pytest

from serving_helpers import records_of
from flowline.components.package.model_package import verify
from flowline.inference_services.local_server import running_server
from flowline.inference_services.model import canary_takes

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

CANARY_PERCENT = 30


@pytest.fixture(scope="module")
def split_server(churn_package, churn_package_b, tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")
    log = folder / "predictions.jsonl"
    with running_server([f"churn={churn_package}"], log_path=str(folder / "server.log"),
                        extra_args=["--canary", f"churn={churn_package_b}", "--canary-percent", str(CANARY_PERCENT),
                                    "--prediction-log", str(log)]) as url:
        yield url, log


def test_requests_split_by_id_and_every_answer_is_logged_for_joining_outcomes(
        split_server, churn_package, churn_package_b, churn_test_rows):
    url, log = split_server
    versions = {"champion": verify(churn_package)["version"], "canary": verify(churn_package_b)["version"]}
    assert versions["champion"] != versions["canary"]
    record = records_of(churn_test_rows.head(1))
    answered = {}
    with httpx.Client(base_url=url) as client:
        for n in range(300):
            request_id = f"req-{n}"
            response = client.post("/v1/models/churn:predict", json={"instances": record},
                                   headers={"x-request-id": request_id})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["id"] == request_id
            expected = "canary" if canary_takes(request_id, CANARY_PERCENT) else "champion"
            assert body["model_version"] == versions[expected]
            answered[request_id] = body["model_version"]
        again = client.post("/v1/models/churn:predict", json={"instances": record}, headers={"x-request-id": "req-7"})
        assert again.json()["model_version"] == answered["req-7"]  # the same id, the same arm
        v2 = client.post("/v2/models/churn/infer", json={"id": "req-7", "inputs": [
            {"name": c, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64", "data": [v]}
            for c, v in record[0].items()]})
        assert v2.status_code == 200, v2.text
        assert v2.json()["id"] == "req-7" and v2.json()["model_version"] == answered["req-7"]
    canary_share = sum(v == versions["canary"] for v in answered.values()) / len(answered)
    assert 0.2 < canary_share < 0.4
    lines = [json.loads(line) for line in Path(log).read_text().splitlines()]
    assert len(lines) == 302
    assert {line["request_id"]: line["version"] for line in lines[:300]} == answered
    assert all(versions[line["arm"]] == line["version"] and line["rows"] == 1 for line in lines)
