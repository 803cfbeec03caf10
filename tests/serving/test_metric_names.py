"""Every metric a dashboard or alert rule uses is exported by a real running server or drift monitor."""

import shutil
import uuid

import httpx
import pytest

from flowline.inference_services.local_server import (
    LOOPBACK,
    SERVE_COMMAND,
    free_port,
    running_process,
    running_server,
)
from promql_names import exported_names_used
from serving_helpers import AUTHORIZED, build_package, records_of, repository_env

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

CLOUDEVENT = {"ce-specversion": "1.0", "ce-source": "http://localhost:9081/", "content-type": "application/json"}


def exported(text: str) -> set[str]:
    """Series names on a /metrics page, with histogram and counter suffixes as Prometheus stores them."""
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def event(client: httpx.Client, event_type: str, body: dict) -> None:
    headers = {**CLOUDEVENT, "ce-type": event_type, "ce-id": str(uuid.uuid4())}
    client.post("/v1/models/churn-drift:predict", json=body, headers=headers)


@pytest.fixture(scope="module")
def live_metrics(churn_package, churn_test_rows, tmp_path_factory) -> set[str]:
    """/metrics of a model server and a drift monitor after one of every kind of event."""
    folder = tmp_path_factory.mktemp("metric-names")
    current = folder / "current"
    current.symlink_to(churn_package)
    record = records_of(churn_test_rows.dropna().head(1))[0]
    names: set[str] = set()
    with running_server([f"churn={current}"], log_path=str(folder / "server.log"), env=repository_env()) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        client.post("/v1/models/churn:predict", json={"instances": [record]})
        # within the contract (no maximum), beyond the training range: counted as out of profile
        client.post("/v1/models/churn:predict", json={"instances": [{**record, "MonthlyCharges": 10_000.0}]})
        client.post("/v1/models/churn:explain", json={"instances": [record]})
        client.post("/v1/models/churn:predict", json={"instances": []})  # a refusal
        broken = shutil.copytree(churn_package, folder / "broken")
        (broken / "model.json").write_text("{}")
        current.unlink()
        current.symlink_to(broken)
        assert client.post("/v2/repository/models/churn/load", headers=AUTHORIZED).status_code == 409  # refused
        names |= exported(client.get("/metrics").text)

    port = free_port()
    monitor_url = f"http://{LOOPBACK}:{port}"
    command = [*SERVE_COMMAND, "--drift-monitor", str(churn_package),
               "--host", LOOPBACK, "--port", str(port)]
    with running_process(command, f"{monitor_url}/v2/health/ready", str(folder / "monitor.log")), \
            httpx.Client(base_url=monitor_url, timeout=60) as client:
        window = client.get("/metrics").text
        size = int(float(next(l for l in window.splitlines() if l.startswith("flowline_drift_window_size{"))
                         .rsplit(" ", 1)[1]))
        rows = records_of(churn_test_rows.sample(size, replace=True, random_state=0))
        event(client, "org.kubeflow.serving.inference.request", {"instances": rows})  # one full window
        event(client, "org.kubeflow.serving.inference.request", {"instances": [{"tenure": 1}]})  # an invalid event
        for status in ("succeeded", "failed"):
            event(client, "dev.flowline.pipeline.run.finished", {"use_case": "churn", "status": status})
        names |= exported(client.get("/metrics").text)
    return names


@pytest.fixture(scope="module")
def entity_metrics(tmp_path_factory) -> set[str]:
    """/metrics of a server of a package with entity features (which owns its definition in the store)."""
    from payments import payments_use_case, transactions

    folder = tmp_path_factory.mktemp("entity-metrics")
    transactions().to_csv(folder / "payments.csv", index=False)
    use_case = payments_use_case(data={"path": str(folder / "payments.csv")},
                                 tuning={"families": {"xgboost": 1}, "max_boost_rounds": 20})
    package = build_package(use_case, folder / "build", trials=1)
    with running_server([str(package)], extra_args=["--online-store", f"sqlite://{folder}/online.db"],
                        log_path=str(folder / "server.log")) as url:
        return exported(httpx.get(f"{url}/metrics", timeout=60).text)


def test_every_metric_in_dashboards_and_rules_is_exported(live_metrics, entity_metrics):
    used = exported_names_used()
    assert len(used) > 20
    missing = sorted(used - live_metrics - entity_metrics)
    assert not missing, f"used in dashboards or rules but exported by no running server: {missing}"
