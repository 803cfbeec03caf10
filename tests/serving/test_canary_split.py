"""Local A/B: one model name served by two package versions, split by request id, every answer logged."""

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from stand_in_api import StandInApiServer

from serving_helpers import records_of
from flowline.audit import verify as verify_audit_log
from flowline.components.package.model_package import verify
from flowline.inference_services.local_server import running_server
from flowline.inference_services.model import canary_takes
from flowline.pipelines.cli import main

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


def run_experiment(champion: Path, canary: Path, folder: Path, rows, requests: int, rates: dict, seed: int) -> Path:
    """Serve champion and canary half and half, send `requests` requests, and write each answered request's
    outcome (good with the arm's rate in `rates`): a real local A/B run. Returns the folder with both logs."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    record = records_of(rows.head(1))
    with running_server([f"churn={champion}"], log_path=str(folder / "server.log"),
                        extra_args=["--canary", f"churn={canary}", "--canary-percent", "50",
                                    "--prediction-log", str(folder / "predictions.jsonl")]) as url:
        with httpx.Client(base_url=url) as client:
            for n in range(requests):
                client.post("/v1/models/churn:predict", json={"instances": record},
                            headers={"x-request-id": f"{folder.name}-{n}"})
    with open(folder / "outcomes.jsonl", "w") as outcomes:
        for line in Path(folder / "predictions.jsonl").read_text().splitlines():
            served = json.loads(line)
            if served["error"] is None:
                good = int(rng.random() < rates[served["arm"]])
                outcomes.write(json.dumps({"request_id": served["request_id"], "outcome": good}) + "\n")
    return folder


def test_a_failing_canary_is_rolled_back_and_a_better_one_promoted_both_in_the_audit_trail(
        churn_package, churn_package_b, card_package, churn_test_rows, tmp_path, capsys):
    api = StandInApiServer(lambda method, path, body: (200, body or {}))
    audit_log = tmp_path / "audit.jsonl"

    def analyze(folder: Path) -> dict:
        code = main(["canary", "analyze", "--predictions", str(folder / "predictions.jsonl"),
                     "--outcomes", str(folder / "outcomes.jsonl"), "--name", "churn", "--namespace", "flowline",
                     "--kubeconfig", api.kubeconfig(tmp_path), "--apply", "--audit-log", str(audit_log)])
        assert code == 0
        shown = capsys.readouterr().out
        return json.loads(shown[:shown.rindex("}") + 1])

    # A canary whose contract does not fit the requests (card fraud's columns): every request to it fails.
    broken = run_experiment(churn_package, card_package, tmp_path / "broken", churn_test_rows, 600,
                            {"champion": 0.3, "canary": 0.3}, seed=1)
    rolled_back = analyze(broken)
    assert rolled_back["decision"] == "rollback" and "error rate" in rolled_back["reason"] and rolled_back["applied"]
    assert api.requests[-1]["body"] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}

    # A canary whose answers lead to better outcomes (50 % good against 30 %).
    better = run_experiment(churn_package, churn_package_b, tmp_path / "better", churn_test_rows, 1000,
                            {"champion": 0.3, "canary": 0.5}, seed=2)
    promoted = analyze(better)
    assert promoted["decision"] == "promote" and promoted["p_value"] < 0.05 and promoted["applied"]
    assert api.requests[-1]["body"] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}

    records = verify_audit_log(audit_log)
    assert [(r["action"], r["what"]["decision"], r["what"]["applied"]) for r in records] == [
        ("canary_decision", "rollback", True), ("canary_decision", "promote", True)]
    assert records[0]["what"]["arms"]["canary"]["errors"] == records[0]["what"]["arms"]["canary"]["requests"] > 100
