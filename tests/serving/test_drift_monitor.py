"""The drift monitor over real HTTP: KServe payload-logger CloudEvents in, windows tested, metrics out."""

import uuid

import httpx
import numpy as np
import pandas as pd
import pytest

from flowline.drift import MAX_FALSE_ALARM_RATE, load_calibration
from flowline.inference_services.drift_monitor import DriftPackage
from flowline.inference_services.local_server import LOOPBACK, SERVE_COMMAND, free_port, running_process
from flowline.package.format import Package
from serving_helpers import AUTHORIZED, records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

ROWS_PER_EVENT = 20
UNSHIFTED_WINDOWS = 40


@pytest.fixture(autouse=True)
def empty_window(monitor) -> None:
    """Each test starts from an empty window: reloading the package drops the partial one."""
    reloaded = httpx.post(f"{monitor}/v2/repository/models/churn-drift/load", headers=AUTHORIZED, timeout=60)
    assert reloaded.status_code == 200


@pytest.fixture(scope="module")
def window_size(churn_package) -> int:
    return load_calibration(churn_package / "drift").window_size


@pytest.fixture(scope="module")
def reference(churn_package) -> pd.DataFrame:
    """Rows the detector never saw: the test split, raw features only."""
    from flowline.use_case import UseCase

    use_case = UseCase.model_validate_json((churn_package / "use_case.json").read_text())
    return pd.read_parquet(churn_package.parent / "test")[use_case.feature_columns]


def send(client: httpx.Client, frame: pd.DataFrame, event_type: str = "org.kubeflow.serving.inference.request") -> list:
    """Post rows as KServe's logger does: binary-mode CloudEvents carrying the v1 request body."""
    tests = []
    for start in range(0, len(frame), ROWS_PER_EVENT):
        response = client.post("/v1/models/churn-drift:predict", json={
            "instances": records_of(frame.iloc[start:start + ROWS_PER_EVENT])}, headers=event_headers(event_type))
        assert response.status_code == 200, response.text
        tests.extend(response.json()["tests"])
    return tests


def event_headers(event_type: str) -> dict:
    return {"ce-specversion": "1.0", "ce-type": event_type, "ce-source": "http://localhost:9081/",
            "ce-id": str(uuid.uuid4()), "ce-inferenceservicename": "churn", "content-type": "application/json"}


def windows_of(frame: pd.DataFrame, count: int, size: int, seed: int) -> pd.DataFrame:
    """`count` windows, each `size` distinct rows, one after another."""
    rng = np.random.default_rng(seed)
    return pd.concat([frame.iloc[rng.choice(len(frame), size, replace=False)] for _ in range(count)])


def test_unshifted_reference_traffic_rarely_alarms(monitor, reference, window_size):
    with httpx.Client(base_url=monitor, timeout=30) as client:
        tests = send(client, windows_of(reference, UNSHIFTED_WINDOWS, window_size, seed=1))
        metrics = client.get("/metrics").text
    assert len(tests) == UNSHIFTED_WINDOWS
    alarms = sum(t["is_drift"] for t in tests)
    assert alarms / len(tests) <= MAX_FALSE_ALARM_RATE
    # The threshold exported and replied is the one each feature's p-value is held to: it had been the window's
    # (19 times higher on churn), so features under the dashboard's line drove no verdict in 8 % of windows.
    (threshold,) = {t["threshold"] for t in tests}
    assert f'flowline_drift_threshold{{model_name="churn"}} {threshold!r}' in metrics
    assert all(t["is_drift"] == (min(t["p_values"].values()) < threshold) for t in tests)
    assert f'flowline_drift_tests_total{{model_name="churn",result="no_drift"}} {float(len(tests) - alarms)}' in metrics
    assert 'flowline_drift_p_value{feature="MonthlyCharges",model_name="churn"}' in metrics


@pytest.mark.parametrize("shift", ["monthly_charges_up_30_percent", "contract_mix_changed"])
def test_a_shifted_stream_is_flagged_within_one_window(monitor, reference, window_size, shift):
    shifted = windows_of(reference, 1, window_size, seed=2).copy()
    if shift == "monthly_charges_up_30_percent":
        shifted["MonthlyCharges"] *= 1.3
    else:
        shifted.iloc[: window_size // 3, shifted.columns.get_loc("Contract")] = "Two year"
    with httpx.Client(base_url=monitor, timeout=30) as client:
        tests = send(client, shifted)
    assert len(tests) == 1 and tests[0]["is_drift"]
    feature = "MonthlyCharges" if shift.startswith("monthly") else "Contract"
    assert min(tests[0]["p_values"], key=tests[0]["p_values"].get) == feature


def test_the_reply_is_a_cloudevent_and_metrics_are_exported(monitor, reference, window_size):
    with httpx.Client(base_url=monitor, timeout=30) as client:
        response = client.post("/v1/models/churn-drift:predict", json={"instances": records_of(reference.head(3))},
                               headers=event_headers("org.kubeflow.serving.inference.request"))
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    assert response.headers["ce-specversion"] == "1.0" and response.headers["ce-type"]
    assert response.json()["window_size"] == window_size
    for expected in (f'flowline_drift_window_size{{model_name="churn"}} {float(window_size)}',
                     'flowline_drift_events_total{model_name="churn"}', 'flowline_drift_window_fill{model_name="churn"} 3.0',
                     'flowline_drift_threshold{model_name="churn"}'):
        assert expected in metrics, expected


def last_success(metrics: str) -> float:
    (exported,) = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(
        'flowline_pipeline_last_run_timestamp_seconds{status="succeeded",use_case="churn"}')]
    return exported


def test_pipeline_run_outcomes_are_counted(monitor, churn_package):
    with httpx.Client(base_url=monitor, timeout=30) as client:
        response = client.post("/v1/models/churn-drift:predict", headers=event_headers("dev.flowline.pipeline.run.finished"),
                               json={"use_case": "churn", "status": "failed", "run_id": "run-1"})
        metrics = client.get("/metrics").text
        assert client.post("/v1/models/churn-drift:predict", json={"use_case": "churn", "status": "succeeded"},
                           headers=event_headers("dev.flowline.pipeline.run.finished")).status_code == 200
        succeeded = client.get("/metrics").text
    assert response.status_code == 200 and response.json()["recorded"]
    assert 'flowline_pipeline_runs_total{status="failed",use_case="churn"} 1.0' in metrics
    assert 'flowline_pipeline_last_run_timestamp_seconds{status="failed",use_case="churn"}' in metrics
    # Before a success reaches it, the newest success a monitor knows of is its package's build, so that a monitor
    # restarted since the last success (a promotion moves it) still exports one for FlowlinePipelineNoSuccessfulRun.
    built = Package.open(churn_package).built_at
    assert last_success(metrics) == built < last_success(succeeded)


def test_bad_events_are_refused_and_counted(monitor, reference):
    record = records_of(reference.head(1))[0]
    with httpx.Client(base_url=monitor, timeout=30) as client:
        missing = client.post("/v1/models/churn-drift:predict", headers=event_headers("org.kubeflow.serving.inference.request"),
                              json={"instances": [{k: v for k, v in record.items() if k != "tenure"}]})
        unknown_type = client.post("/v1/models/churn-drift:predict", headers=event_headers("com.example.other"),
                                   json={"instances": [record]})
        explain = client.post("/v1/models/churn-drift:explain", json={"instances": [record]},
                              headers=event_headers("org.kubeflow.serving.inference.request"))
        metrics = client.get("/metrics").text
    assert explain.status_code == 400 and "explain: the drift monitor takes CloudEvents" in explain.json()["error"]
    structured = httpx.post(f"{monitor}/v1/models/churn-drift:predict", json={
        "specversion": "1.0", "type": "org.kubeflow.serving.inference.request", "source": "x", "id": "1",
        "data": {"instances": [record]}})
    assert structured.status_code == 400 and "send binary mode" in structured.json()["error"]
    assert missing.status_code == 400 and "missing column 'tenure'" in missing.json()["error"]
    assert unknown_type.status_code == 400 and "ce-type" in unknown_type.json()["error"]
    assert 'flowline_drift_invalid_events_total{model_name="churn",reason="missing_column"} 1.0' in metrics
    assert 'flowline_drift_invalid_events_total{model_name="churn",reason="unsupported_event"} 1.0' in metrics


def test_an_event_without_an_id_or_of_data_not_json_is_a_400_saying_so_and_the_window_keeps_its_rows(monitor,
                                                                                                     reference):
    """KServe's route took an event without ce-id into the window, and refused a NaN (not JSON) saying only that
    it expected v1 or v2 data (the drift audit)."""
    record = records_of(reference.head(1))[0]
    headers = event_headers("org.kubeflow.serving.inference.request")

    def refused(metrics: str, reason: str) -> float:
        line = f'flowline_drift_invalid_events_total{{model_name="churn",reason="{reason}"}} '
        return sum(float(text[len(line):]) for text in metrics.splitlines() if text.startswith(line))

    with httpx.Client(base_url=monitor, timeout=30) as client:
        before = client.get("/metrics").text
        kept = client.post("/v1/models/churn-drift:predict", json={"instances": [record]}, headers=headers)
        assert kept.status_code == 200 and kept.json()["window_fill"] == 1
        no_id = client.post("/v1/models/churn-drift:predict", json={"instances": [record]},
                            headers={k: v for k, v in headers.items() if k != "ce-id"})
        nan = client.post("/v1/models/churn-drift:predict", headers=headers,
                          content=b'{"instances": [{"tenure": NaN}]}')
        after = client.post("/v1/models/churn-drift:predict", json={"instances": [record]}, headers=headers)
        metrics = client.get("/metrics").text
    assert no_id.status_code == 400 and no_id.json()["error"].startswith("ce-id: a binary-mode CloudEvent carries")
    assert nan.status_code == 400 and nan.json()["error"].startswith("body: malformed JSON: ")
    assert after.json()["window_fill"] == 2
    assert [refused(metrics, reason) - refused(before, reason) for reason in ("unsupported_event", "malformed_request")
            ] == [1, 1]


def test_a_stream_gives_the_detectors_own_tests_of_its_consecutive_windows(monitor, churn_package, reference,
                                                                           window_size):
    """However events cut the stream (mostly single rows, as the payload logger sends them), each window is the
    stream's next `window_size` rows, and its p-values and flag are exactly those of the package's detector on
    those rows encoded as the pipeline encodes them (encode_frame); the rest waits in the window."""
    shifted = windows_of(reference, 1, window_size, seed=4).assign(MonthlyCharges=lambda f: f["MonthlyCharges"] * 1.3)
    stream = records_of(pd.concat([windows_of(reference, 2, window_size, seed=3), shifted,
                                   reference.head(window_size // 2)]))
    cuts = np.cumsum([0, *np.resize([1, 1, 1, 1, 7, 1, 20], len(stream))])
    tests, answer = [], None
    with httpx.Client(base_url=monitor, timeout=30) as client:
        for start, end in zip(cuts, cuts[1:]):
            if start >= len(stream):
                break
            answer = client.post("/v1/models/churn-drift:predict", json={"instances": stream[start:end]},
                                 headers=event_headers("org.kubeflow.serving.inference.request"))
            assert answer.status_code == 200, answer.text
            tests.extend(answer.json()["tests"])
    package = DriftPackage.load(churn_package)
    expected = []
    for start in range(0, len(stream) - window_size + 1, window_size):
        window = package.encoder.encode_frame(pd.DataFrame(stream[start:start + window_size]))
        result = package.detector.predict(window, return_p_val=True)["data"]
        expected.append({"is_drift": bool(result["is_drift"]), "threshold": float(result["threshold"]),
                         "p_values": dict(zip(package.encoder.columns, map(float, result["p_val"])))})
    assert tests == expected
    assert [t["is_drift"] for t in tests][-1] and not all(t["is_drift"] for t in tests)  # both kinds of window
    assert answer.json()["window_fill"] == window_size // 2


def test_the_lean_route_answers_as_kserves_route(monitor, reference):
    """A CloudEvents 1.0 binary-mode event takes the lean route; a 0.3 one KServe's v1 route: the same answer and
    reply attributes, and a bad event the same 400."""
    record = records_of(reference.head(1))[0]
    answers = []
    with httpx.Client(base_url=monitor, timeout=30) as client:
        for version in ("1.0", "0.3", "1.0"):
            headers = {**event_headers("org.kubeflow.serving.inference.request"), "ce-specversion": version}
            answers.append(client.post("/v1/models/churn-drift:predict", json={"instances": [record]}, headers=headers))
            bad = client.post("/v1/models/churn-drift:predict", json={"instances": [{**record, "tenure": "x"}]},
                              headers=headers)
            assert bad.status_code == 400 and bad.json() == {"error": "instances[0].tenure: expected a number, got 'x'"}
        metrics = client.get("/metrics").text
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json().pop("window_fill") for a in answers] == [1, 2, 3]
    bodies = [{k: v for k, v in a.json().items() if k != "window_fill"} for a in answers]
    assert bodies[0] == bodies[1] == bodies[2] and bodies[0]["rows"] == 1
    replies = [{k: v for k, v in a.headers.items() if k.startswith("ce-") and k not in ("ce-id", "ce-time")}
               for a in answers]
    assert replies[0] == replies[1] == {"ce-specversion": "1.0", "ce-type": "io.kserve.inference.response",
                                        "ce-source": "io.kserve.inference.churn-drift"}
    assert len({a.headers["ce-id"] for a in answers}) == 3 and all(a.headers["ce-time"] for a in answers)
    assert 'flowline_drift_invalid_events_total{model_name="churn",reason="wrong_type"} 3.0' in metrics
    assert 'flowline_http_requests_total{code="200",model_name="churn-drift"' in metrics


def test_with_two_workers_each_tests_windows_of_the_events_it_receives(churn_package, reference, window_size,
                                                                      tmp_path):
    """`--workers 2`: each worker's windows are the rows of the events it received, in their order, tested as the
    detector tests them; /metrics sums the events and has each worker's window fill (a pid label)."""
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [*SERVE_COMMAND, "--drift-monitor", str(churn_package), "--host", LOOPBACK, "--port", str(port),
               "--workers", "2"]
    run = {"use_case": "churn", "status": "succeeded", "run_id": "r"}
    with running_process(command, f"{url}/v2/health/ready", str(tmp_path / "monitor.log"), ready_timeout=180):
        clients = {}  # one kept-alive connection to each worker: what it is sent, it receives in that order
        for _ in range(40):
            client = httpx.Client(base_url=url, timeout=60)
            pid = client.post("/v1/models/churn-drift:predict", json=run,
                              headers=event_headers("dev.flowline.pipeline.run.finished")).headers["x-flowline-worker"]
            if clients.setdefault(pid, client) is not client:
                client.close()
            if len(clients) == 2:
                break
        assert len(clients) == 2, "every new connection went to the same worker"
        rows = {pid: records_of(windows_of(reference, count, window_size, seed=6 + count)) + records_of(
            reference.head(count * 7)) for pid, count in zip(clients, (2, 1))}
        tests = {pid: [] for pid in clients}
        for start in range(0, max(map(len, rows.values())), ROWS_PER_EVENT):  # the two streams interleaved
            for pid, client in clients.items():
                if start < len(rows[pid]):
                    answer = client.post("/v1/models/churn-drift:predict", json={
                        "instances": rows[pid][start:start + ROWS_PER_EVENT]},
                        headers=event_headers("org.kubeflow.serving.inference.request"))
                    assert answer.status_code == 200 and answer.headers["x-flowline-worker"] == pid, answer.text
                    tests[pid].extend(answer.json()["tests"])
        metrics = next(iter(clients.values())).get("/metrics").text
        for client in clients.values():
            client.close()
    package = DriftPackage.load(churn_package)
    for pid, count in zip(clients, (2, 1)):
        windows = [package.encoder.encode_frame(pd.DataFrame(rows[pid][k * window_size:(k + 1) * window_size]))
                   for k in range(count)]
        expected = [package.detector.predict(window, return_p_val=True)["data"] for window in windows]
        assert [(t["is_drift"], list(t["p_values"].values())) for t in tests[pid]] == \
            [(bool(e["is_drift"]), [float(p) for p in e["p_val"]]) for e in expected]
        assert f'flowline_drift_window_fill{{model_name="churn",pid="{pid}"}} {float(count * 7)}' in metrics
    events = sum(-(-len(r) // ROWS_PER_EVENT) for r in rows.values())
    assert f'flowline_drift_events_total{{model_name="churn"}} {float(events)}' in metrics
    # Outcomes not seen yet are series at 0 from the start, so the alert rules' increase() counts the first one.
    assert 'flowline_pipeline_runs_total{status="failed",use_case="churn"} 0.0' in metrics
    assert all(f'flowline_drift_tests_total{{model_name="churn",result="{result}"}}' in metrics
               for result in ("drift", "no_drift"))
    assert sum(map(len, tests.values())) == 3
    assert 'flowline_pipeline_runs_total{status="succeeded",use_case="churn"}' in metrics


def test_a_package_of_another_use_case_is_refused_and_the_monitored_one_kept(churn_package, card_package):
    from flowline.inference_services.drift_monitor import DriftMonitor
    from flowline.package.format import PackageError

    monitor = DriftMonitor("churn-drift", churn_package)
    monitor.load()
    version = monitor.package.version
    with pytest.raises(PackageError, match="holds a model of use case 'card-fraud'; churn-drift serves 'churn'"):
        monitor.reload(card_package)
    assert monitor.package.version == version and monitor.package_path == str(churn_package)
