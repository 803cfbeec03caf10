"""Local A/B: one model name served by two package versions, split by request id, every answer logged."""

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from stand_in_api import StandInApiServer

from serving_helpers import records_of
from flowline.audit import verify as verify_audit_log
from flowline.inference_service import inference_service
from flowline.package.format import verify
from flowline.inference_services.local_server import running_server
from flowline.inference_services.model import canary_takes
from flowline.pipelines.cli import main

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

CANARY_PERCENT = 30


@pytest.fixture(scope="module")
def split_server(churn_package, churn_package_b, tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")
    log = folder / "predictions.jsonl"
    with running_server([f"churn={churn_package}"], log_path=str(folder / "server.log"), workers=2,
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
        for request_id in ("req-7", next(i for i, v in answered.items() if v == versions["canary"]),
                           next(i for i, v in answered.items() if v == versions["champion"])):
            explained = client.post("/v1/models/churn:explain", json={"instances": record},
                                    headers={"x-request-id": request_id})
            assert explained.status_code == 200, explained.text
            assert explained.json()["model_version"] == answered[request_id]  # the model that decided explains
            assert explained.json()["id"] == request_id
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
    # The cluster: churn with a canary deployed, its drift monitor on churn's first package; patches are echoed.
    served = {"churn": inference_service("churn", "s3://b/churn/v2", namespace="flowline", canary_percent=50),
              "churn-drift": inference_service("churn-drift", "s3://flowline-models/churn/current",
                                               namespace="flowline")}
    for service in served.values():
        service["metadata"]["resourceVersion"] = "1"
    api = StandInApiServer(lambda method, path, body: (200, body or served[path.rsplit("/", 1)[-1]]))

    def last_patch_of(name: str) -> dict:
        return next(r["body"] for r in reversed(api.requests) if r["method"] == "PATCH" and r["path"].endswith(name))
    audit_log = tmp_path / "audit.jsonl"

    def analyze(folder: Path) -> dict:
        code = main(["canary", "analyze", "--predictions", str(folder / "predictions.jsonl"),
                     "--outcomes", str(folder / "outcomes.jsonl"), "--name", "churn", "--namespace", "flowline",
                     "--kubeconfig", api.kubeconfig(tmp_path), "--apply", "--audit-log", str(audit_log),
                     "--value-per-success", "500"])
        assert code == 0
        shown = capsys.readouterr().out
        return json.loads(shown[:shown.rindex("}") + 1])

    # A canary whose contract does not fit the requests (card fraud's columns): every request to it fails.
    broken = run_experiment(churn_package, card_package, tmp_path / "broken", churn_test_rows, 600,
                            {"champion": 0.3, "canary": 0.3}, seed=1)
    rolled_back = analyze(broken)
    assert rolled_back["decision"] == "rollback" and "error rate" in rolled_back["reason"] and rolled_back["applied"]
    assert api.requests[-1]["body"]["spec"] == {"predictor": {"canaryTrafficPercent": 0}}  # the monitor stays

    # A canary whose answers lead to better outcomes (50 % good against 30 %).
    better = run_experiment(churn_package, churn_package_b, tmp_path / "better", churn_test_rows, 1000,
                            {"champion": 0.3, "canary": 0.5}, seed=2)
    promoted = analyze(better)
    assert promoted["decision"] == "promote" and promoted["p_value"] < 0.05 and promoted["applied"]
    gain = promoted["canary_success_rate"] - promoted["champion_success_rate"]
    assert promoted["impact_per_1000_requests"] == pytest.approx(gain * 1000 * 500) and gain > 0.1
    assert last_patch_of("/churn")["spec"] == {"predictor": {"canaryTrafficPercent": None}}
    assert last_patch_of("/churn-drift")["spec"] == {"predictor": {"model": {"storageUri": "s3://b/churn/v2"}}}

    records = verify_audit_log(audit_log)
    assert [(r["action"], r["what"]["decision"], r["what"]["applied"]) for r in records] == [
        ("canary_decision", "rollback", True), ("canary_decision", "promote", True)]
    assert records[0]["what"]["arms"]["canary"]["errors"] == records[0]["what"]["arms"]["canary"]["requests"] > 100


@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")  # kfp.local on the flowline image
def test_the_canary_controller_reads_prometheus_and_runs_as_a_kfp_component(
        churn_package, churn_package_b, churn_test_rows, prometheus, tmp_path):
    """A real local A/B run scraped by a real Prometheus; the application exports outcomes by version.
    Prometheus's numbers equal the prediction log's; the component (through kfp.local) promotes."""
    from kfp import local
    from prometheus_client import CollectorRegistry, start_http_server

    from flowline.canary import FAILURE, SUCCESS, CanarySourceError, arms_from_logs, arms_from_prometheus, outcome_counter
    from flowline.components import flowline_component
    from flowline.components.deploy.component import canary
    from flowline.inference_services.local_server import LOOPBACK, free_port
    from flowline.inference_services.metrics import LATENCY
    from prometheus_server import running_prometheus

    registry = CollectorRegistry()  # the application's own metrics, not this process's
    outcomes = outcome_counter(registry)
    app_port = free_port()
    app_server, _ = start_http_server(app_port, addr=LOOPBACK, registry=registry)
    rng = np.random.default_rng(3)
    rates = {verify(churn_package)["version"]: 0.3, verify(churn_package_b)["version"]: 0.5}
    record = records_of(churn_test_rows.head(1))
    log, outcomes_file = tmp_path / "predictions.jsonl", tmp_path / "outcomes.jsonl"
    try:
        with running_server([f"churn={churn_package}"], log_path=str(tmp_path / "server.log"),
                            extra_args=["--canary", f"churn={churn_package_b}", "--canary-percent", "50",
                                        "--prediction-log", str(log)]) as url, \
                running_prometheus(prometheus, [url.removeprefix("http://"), f"{LOOPBACK}:{app_port}"],
                                   tmp_path / "prometheus") as prometheus_url, \
                httpx.Client(base_url=url) as client, open(outcomes_file, "w") as outcome_lines:
            for n in range(1000):
                if n % 50 == 0:  # refused on either arm: a failure the error rates must count
                    refused = client.post("/v1/models/churn:predict", json={"instances": [{"tenure": 1}]},
                                          headers={"x-request-id": f"bad-{n}"})
                    assert refused.status_code == 400
                response = client.post("/v1/models/churn:predict", json={"instances": record},
                                       headers={"x-request-id": f"ab-{n}"})
                version = response.json()["model_version"]
                good = bool(rng.random() < rates[version])
                outcomes.labels("churn", version, SUCCESS if good else FAILURE).inc()
                outcome_lines.write(json.dumps({"request_id": f"ab-{n}", "outcome": int(good)}) + "\n")
            outcome_lines.flush()
            logged = arms_from_logs(log, outcomes_file)
            scraped = None
            for _ in range(60):  # until a scrape after the last request has landed
                try:
                    scraped = arms_from_prometheus(prometheus_url, "churn")
                except CanarySourceError:  # no scrape of both versions yet
                    time.sleep(0.5)
                    continue
                if all((scraped[a].requests, scraped[a].successes) == (logged[a].requests, logged[a].successes)
                       for a in logged):
                    break
                time.sleep(0.5)
            assert scraped is not None, "Prometheus never showed both versions"
            for arm in ("champion", "canary"):
                assert (scraped[arm].requests, scraped[arm].errors, scraped[arm].successes, scraped[arm].version) == (
                    logged[arm].requests, logged[arm].errors, logged[arm].successes, logged[arm].version)
                assert scraped[arm].errors > 0
                # histogram_quantile interpolates inside the bucket that holds the p99. The server times a
                # request a little apart from what the prediction log records, so on a busy machine the p99 may
                # sit in the neighbouring bucket (9.8 ms logged, 10.4 ms scraped, edge 10 ms; 1.44 ms logged,
                # 2.12 ms scraped, edge 2 ms), not further.
                bounds, exact = LATENCY._upper_bounds, logged[arm].latency_p99_seconds
                assert abs(int(np.searchsorted(bounds, scraped[arm].latency_p99_seconds))
                           - int(np.searchsorted(bounds, exact))) <= 1, (scraped[arm], exact)
                # The answers at each bound, which the latency guardrail counts, agree as closely.
                answered = logged[arm].answered
                assert len(scraped[arm].latency_counts) == len(logged[arm].latency_counts) == len(bounds) - 1  # +Inf
                assert max(abs(a - b) for a, b in zip(scraped[arm].latency_counts, logged[arm].latency_counts)) \
                    <= 0.1 * answered, (scraped[arm].latency_counts, logged[arm].latency_counts)

            audit_log = tmp_path / "audit.jsonl"
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
                       raise_on_error=True)
            # The latency guardrail is off here (tests/test_ab_testing.py covers it): both arms answer from one
            # busy test machine, where one p99 came out 1.79 times the other's by chance and the canary was rolled back.
            task = flowline_component(canary)(name="churn", namespace="flowline", prometheus_url=prometheus_url,
                                              predictions="", outcomes="", audit_log=str(audit_log), apply=True,
                                              policy={"max_latency_ratio": 1000.0})
    finally:
        app_server.shutdown()
    decision = task.outputs["decision"]
    assert decision.metadata["decision"] == "promote" and decision.metadata["applied"] is False  # no cluster here
    (record_,) = verify_audit_log(audit_log)
    assert record_["what"]["source"] == f"prometheus {prometheus_url}"
    assert record_["what"]["arms"]["canary"]["version"] == verify(churn_package_b)["version"]
    assert record_["what"]["p_value"] < 0.05 and record_["what"]["canary_success_rate"] > 0.4


def test_a_prediction_log_that_cannot_be_written_is_counted_and_the_answers_still_given(churn_package,
                                                                                     churn_test_rows, tmp_path):
    """A full disk under --prediction-log (/dev/full refuses every write with ENOSPC) made every answer a 500
    after it was counted as a prediction. The answers stand; the failures are counted, and logged once."""
    server_log = tmp_path / "server.log"
    with running_server([f"churn={churn_package}"], log_path=str(server_log), workers=1,
                        extra_args=["--prediction-log", "/dev/full"]) as url, httpx.Client(base_url=url) as client:
        for n in range(3):
            answer = client.post("/v1/models/churn:predict", json={"instances": records_of(churn_test_rows.head(2))})
            assert answer.status_code == 200, answer.text
        metrics = client.get("/metrics").text
    assert 'flowline_prediction_log_errors_total{model_name="churn"} 3.0' in metrics
    assert server_log.read_text().count("prediction log /dev/full: cannot record answers") == 1


def test_a_versioned_infer_is_answered_by_the_version_it_names(split_server, churn_package, churn_package_b,
                                                                churn_test_rows):
    """Under a canary split, a v2 URL naming a version pins the request to it, whatever its id's share."""
    from serving_helpers import column_tensors
    from flowline.inference_services.model import LoadedPackage

    url, _ = split_server
    loaded = LoadedPackage.load(churn_package)
    inputs = column_tensors(loaded.use_case, churn_test_rows.dropna().head(1), loaded.feature_set.input_columns)
    champion, canary = verify(churn_package)["version"], verify(churn_package_b)["version"]
    assert httpx.get(f"{url}/v2/models/churn").json()["versions"] == [champion, canary]
    for version in (champion, canary):
        answered = {httpx.post(f"{url}/v2/models/churn/versions/{version}/infer", json={"id": f"v-{n}", "inputs": inputs}
                               ).json()["model_version"] for n in range(20)}
        assert answered == {version}


def test_each_request_is_counted_under_the_version_that_took_it(split_server, churn_package, churn_package_b,
                                                                churn_test_rows):
    """flowline_http_requests_total counted every request of a local canary under the champion's version, the
    canary's answers and refusals too: the 5xx ratio by version had one version, and the alert comparing the
    canary's with the champion's could never fire. Each is counted under the arm it went to, as the prediction
    log records it; a versioned URL under the version it names, also when its body cannot be read."""
    from serving_helpers import column_tensors, samples
    from flowline.inference_services.model import LoadedPackage

    url, log = split_server
    champion, canary = verify(churn_package)["version"], verify(churn_package_b)["version"]
    record = records_of(churn_test_rows.dropna().head(1))[0]
    loaded = LoadedPackage.load(churn_package)
    inputs = column_tensors(loaded.use_case, churn_test_rows.dropna().head(1), loaded.feature_set.input_columns)
    before, logged_before = samples(url, "flowline_http_requests_total"), len(log.read_text().splitlines())
    with httpx.Client(base_url=url) as client:
        for n in range(40):
            request_id = f"count-{n}"
            good = client.post("/v1/models/churn:predict", json={"instances": [record]},
                               headers={"x-request-id": request_id})
            bad = client.post("/v1/models/churn:predict", json={"instances": [{**record, "tenure": "long"}]},
                              headers={"x-request-id": request_id})
            assert (good.status_code, bad.status_code) == (200, 400), bad.text
            assert "instances[0].tenure" in bad.json()["error"]
            v2 = client.post("/v2/models/churn/infer", json={"id": f"count-v2-{n}", "inputs": inputs})
            assert v2.status_code == 200, v2.text
        for n in range(5):
            pinned = client.post(f"/v2/models/churn/versions/{canary}/infer", json={"id": f"count-{n}", "inputs": inputs})
            assert pinned.status_code == 200 and pinned.json()["model_version"] == canary
        for request_id in (f"count-{n}" for n in range(9)):  # explained by the arm that decided; not logged
            explained = client.post("/v1/models/churn:explain", json={"instances": [record]},
                                    headers={"x-request-id": request_id})
            assert explained.status_code == 200, explained.text
        unread = client.post(f"/v2/models/churn/versions/{canary}/infer", content=b"{not json")
        assert unread.status_code == 400 and "body" in unread.json()["error"]
        unknown = client.post("/v2/models/churn/versions/nope/infer", json={"id": "count-x", "inputs": inputs})
        assert unknown.status_code == 404
    after = samples(url, "flowline_http_requests_total")
    counted = Counter({dict(labels)["model_version"] + " " + dict(labels)["code"]: value - before.get(labels, 0)
                       for labels, value in after.items() if dict(labels)["model_name"] == "churn"})
    lines = [json.loads(line) for line in log.read_text().splitlines()[logged_before:]]
    expected = Counter(f"{line['version']} {200 if line['error'] is None else 400}" for line in lines)
    expected.update({f"{canary} 400": 1, f"{champion} 404": 1})  # refused before the log: not in it
    expected.update(f"{canary if canary_takes(f'count-{n}', CANARY_PERCENT) else champion} 200" for n in range(9))
    assert {key: value for key, value in counted.items() if value} == expected
    assert expected[f"{canary} 200"] >= 5 + 10 and expected[f"{canary} 400"] >= 5  # both arms answered and refused
    assert expected[f"{champion} 200"] >= 40 and expected[f"{champion} 400"] >= 5
