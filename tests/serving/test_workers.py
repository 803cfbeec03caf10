"""`flowline serve --workers N`: the default from the cgroup CPU quota, metrics summed across workers, the
canary and its prediction log, loads and unloads applied by every worker, and the parent's supervision."""

import argparse
import json
import os
import re
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from flowline.inference_services import options
from flowline.inference_services.local_server import LOOPBACK, SERVE_COMMAND, free_port, running_process, running_server
from flowline.inference_services.model import canary_takes
from flowline.package.format import verify
from serving_helpers import AUTHORIZED, records_of, repository_env, samples
from test_reload import corrupted_copy, point

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

PREDICT = "/v1/models/churn:predict"
WORKER = "x-flowline-worker"


@pytest.mark.parametrize("cpu_max, expected", [
    ("max 100000\n", 6),  # no quota: the CPUs this process may run on
    ("200000 100000\n", 2),
    ("150000 100000\n", 2),  # 1.5 CPUs: rounded up
    ("50000 100000\n", 1),  # half a CPU: at least one worker
    ("400000 50000\n", 8),
    (None, 6),  # no cgroup v2 file
    ("garbage", 6),
])
def test_workers_follow_the_cgroup_cpu_quota(cpu_max, expected):
    assert options.workers_for(cpu_max, cpus=6) == expected


def test_the_default_workers_read_the_cgroup_file(tmp_path, monkeypatch):
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(options, "CGROUP_CPU_MAX", cpu_max)
    assert options.default_workers() == len(os.sched_getaffinity(0))
    cpu_max.write_text("300000 100000\n")
    assert options.default_workers() == 3


def answers(url: str, body: dict, count: int, request_id: str = "") -> list[httpx.Response]:
    """`count` predictions over many connections (a new one per request, 16 at a time), so every worker answers."""
    def one(n: int) -> httpx.Response:
        headers = {"x-request-id": f"{request_id}{n}"} if request_id else {}
        return httpx.post(f"{url}{PREDICT}", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def workers_of_kept_connections(url: str, body: dict, count: int) -> Counter:
    """Open `count` connections one after another, each kept open, and count the worker answering on each."""
    clients = [httpx.Client(base_url=url, timeout=30) for _ in range(count)]
    try:
        return Counter(client.post(PREDICT, json=body, headers={"x-request-id": f"kept-{n}"}).headers[WORKER]
                       for n, client in enumerate(clients))
    finally:
        for client in clients:
            client.close()


def garbage_collections(url: str) -> tuple[dict, dict]:
    """flowline_gc_collections_total and flowline_gc_pause_seconds_total, once each worker has moved its first
    generation-0 collections into them (every GC_FLUSH_S)."""
    for _ in range(100):
        collections = samples(url, "flowline_gc_collections_total")
        if collections.get((("generation", "0"),), 0) > 0:
            break
        time.sleep(0.1)
    return collections, samples(url, "flowline_gc_pause_seconds_total")


def test_two_workers_count_every_request_once_and_log_every_canary_answer(
        churn_package, churn_package_b, churn_test_rows, tmp_path):
    versions = {"champion": verify(churn_package)["version"], "canary": verify(churn_package_b)["version"]}
    log = tmp_path / "predictions.jsonl"
    body = {"instances": records_of(churn_test_rows.head(1))}
    with running_server([f"churn={churn_package}"], log_path=str(tmp_path / "server.log"), workers=2,
                        extra_args=["--canary", f"churn={churn_package_b}", "--canary-percent", "30",
                                    "--prediction-log", str(log)]) as url:
        answered = answers(url, body, 200, request_id="req-")
        requests = samples(url, "flowline_http_requests_total")
        latency_counts = samples(url, "flowline_request_latency_seconds_count")
        predictions = samples(url, "flowline_predictions_total")
        info = samples(url, "flowline_model_info")
        memory = samples(url, "process_resident_memory_bytes")
        started = samples(url, "process_start_time_seconds")
        collections, paused = garbage_collections(url)
        kept_open = workers_of_kept_connections(url, body, 8)  # after the counts: 8 more requests

    assert all(response.status_code == 200 for response in answered)
    assert len({response.headers[WORKER] for response in answered}) == 2  # both workers answered
    # Connections kept open spread over the workers (one socket handed to both gave them all to one worker).
    assert len(kept_open) == 2 and min(kept_open.values()) >= 2, kept_open
    by_version = Counter(response.json()["model_version"] for response in answered)
    expected = Counter(versions["canary"] if canary_takes(f"req-{n}", 30) else versions["champion"] for n in range(200))
    assert by_version == expected and len(by_version) == 2
    # Every counter and histogram summed exactly across the workers; a request, its latency and its predictions
    # counted under the version that answered.
    assert requests == {(("code", "200"), ("model_name", "churn"), ("model_version", version)): count
                        for version, count in by_version.items()}
    for version, count in by_version.items():
        assert latency_counts[(("model_name", "churn"), ("model_version", version))] == count
        assert sum(value for labels, value in predictions.items() if ("model_version", version) in labels) == count
    assert sum(latency_counts.values()) == 200
    assert {dict(labels)["model_version"] for labels in info} == set(versions.values())
    assert all(value == 1 for value in info.values())  # one series per version, not one per worker
    # Every worker's process, whichever answered the scrape: the pod's memory is their sum.
    assert sorted(memory) == sorted(started) == [(("worker", "0"),), (("worker", "1"),)]
    assert all(value > 50e6 for value in memory.values())  # each has loaded the packages
    # Garbage collections, which python_gc_* showed with one worker only: summed over the workers by generation.
    assert sorted(collections) == sorted(paused) == [(("generation", str(g)),) for g in range(3)]
    assert collections[(("generation", "0"),)] > 0 and paused[(("generation", "0"),)] > 0

    lines = [json.loads(line) for line in log.read_text().splitlines()]  # each line whole: written by one write(2)
    assert sum(line["request_id"].startswith("kept-") for line in lines) == 8
    lines = [line for line in lines if line["request_id"].startswith("req-")]
    assert len(lines) == 200
    assert {line["request_id"]: line["version"] for line in lines} == {
        response.json()["id"]: response.json()["model_version"] for response in answered}
    assert all(versions[line["arm"]] == line["version"] for line in lines)
    # Each worker says a warning as the command does, in one line, and fastapi's deprecation of kserve's
    # response class, which read as an error, is not said at all (the README audit).
    said = (tmp_path / "server.log").read_text()
    assert "flowline: warning: package" in said and "no signing key" in said
    assert "NoSigningKeyWarning" not in said and "ORJSONResponse" not in said, said


def test_a_load_reaches_every_worker_a_forged_package_none_and_an_unload_all(
        churn_package, churn_package_b, churn_test_rows, tmp_path):
    version_a, version_b = verify(churn_package)["version"], verify(churn_package_b)["version"]
    current = tmp_path / "current"
    current.symlink_to(churn_package)
    body = {"instances": records_of(churn_test_rows.head(1))}

    def served() -> tuple[set, set]:
        """(statuses and versions, workers) of 50 requests over many connections."""
        responses = answers(url, body, 50)
        return ({(r.status_code, r.json().get("model_version")) for r in responses},
                {r.headers[WORKER] for r in responses})

    with running_server([f"churn={current}"], log_path=str(tmp_path / "server.log"), workers=2,
                        env=repository_env()) as url:
        outcomes, workers = served()
        assert outcomes == {(200, version_a)} and len(workers) == 2
        point(current, churn_package_b)
        loaded = httpx.post(f"{url}/v2/repository/models/churn/load", headers=AUTHORIZED, timeout=150)
        assert loaded.status_code == 200 and loaded.json()["version"] == version_b, loaded.text
        outcomes, workers = served()
        assert outcomes == {(200, version_b)} and len(workers) == 2

        point(current, corrupted_copy(churn_package_b, tmp_path / "corrupt"))
        refused = httpx.post(f"{url}/v2/repository/models/churn/load", headers=AUTHORIZED, timeout=150)
        assert refused.status_code == 409 and "model.json" in refused.json()["error"], refused.text
        outcomes, workers = served()
        assert outcomes == {(200, version_b)} and len(workers) == 2

        unloaded = httpx.post(f"{url}/v2/repository/models/churn/unload", headers=AUTHORIZED, timeout=150)
        assert unloaded.status_code == 200, unloaded.text
        outcomes, workers = served()
        assert outcomes == {(503, None)} and len(workers) == 2
        assert {httpx.get(f"{url}/v2/health/ready").status_code for _ in range(20)} == {503}

        point(current, churn_package)
        loaded = httpx.post(f"{url}/v2/repository/models/churn/load", headers=AUTHORIZED, timeout=150)
        assert loaded.status_code == 200 and loaded.json()["version"] == version_a, loaded.text
        outcomes, workers = served()
        assert outcomes == {(200, version_a)} and len(workers) == 2
        reloads = samples(url, "flowline_model_reloads_total")
    assert reloads == {(("model_name", "churn"), ("result", "loaded")): 2,  # once per call, not once per worker
                       (("model_name", "churn"), ("result", "refused")): 1}


def serve_two_workers(package: Path, tmp_path: Path, name: str):
    port = free_port()
    command = [*SERVE_COMMAND, str(package), "--port", str(port), "--workers", "2"]  # the default host
    return f"http://{LOOPBACK}:{port}", running_process(command, f"http://{LOOPBACK}:{port}/v2/health/ready",
                                                         str(tmp_path / name))


def worker_pids(url: str, body: dict) -> set[int]:
    return {int(response.headers[WORKER]) for response in answers(url, body, 40)}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_sigterm_stops_every_worker_and_a_dead_worker_stops_the_server(churn_package, record, tmp_path):
    body = {"instances": [record]}
    url, server = serve_two_workers(churn_package, tmp_path, "stopped.log")
    with server as process:
        pids = worker_pids(url, body)
        state = Path(re.search(r"their state in (\S+)", (tmp_path / "stopped.log").read_text()).group(1))
        assert (state / "metrics").is_dir()
    assert process.returncode == 0 and len(pids) == 2 and all(map(gone, pids))
    assert not state.exists()
    assert f"serving on 127.0.0.1:{url.rsplit(':', 1)[1]} from 2 workers" in (tmp_path / "stopped.log").read_text()

    url, server = serve_two_workers(churn_package, tmp_path, "crashed.log")
    with server as process:
        pids = worker_pids(url, body)
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == 1 and all(map(gone, pids))
    assert f"(pid {victim}) was killed by SIGKILL: stopping the server" in (tmp_path / "crashed.log").read_text()


def test_a_draining_server_of_several_workers_refuses_new_connections(churn_package, tmp_path):
    """After SIGTERM the workers finish what they hold, here a request half sent; a client arriving meanwhile is
    refused at once, as by one process, not taken into a backlog nobody reads and reset when the drain ends."""
    url, server = serve_two_workers(churn_package, tmp_path, "draining.log")
    port = int(url.rsplit(":", 1)[1])
    with server as process, socket.create_connection((LOOPBACK, port)) as held:
        held.sendall(b"POST /v1/models/churn:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"instances\": [")
        time.sleep(0.5)  # its headers read: a request in flight, which the drain waits for
        process.send_signal(signal.SIGTERM)
        refused = False
        for _ in range(100):
            try:
                socket.create_connection((LOOPBACK, port), timeout=5).close()
            except ConnectionRefusedError:
                refused = True
                break
            time.sleep(0.05)
        assert refused and process.poll() is None  # refused while the drain still waits for the held request


def test_the_drift_monitor_refuses_more_than_one_retraining_worker(churn_package, capsys):
    """Several drift-monitor workers are tested in test_drift_monitor.py; with retraining they are refused."""
    from flowline.pipelines.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--drift-monitor", str(churn_package), "--workers", "2", "--on-drift", "local"])
    assert "--workers 2 with --on-drift local: every worker would retrain" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", str(churn_package), "--workers", "-1"])
    assert "--workers -1: give 0 (one per CPU) or more" in capsys.readouterr().err


def test_workers_0_is_one_per_cpu_of_the_quota(monkeypatch):
    """The drift monitors' ServingRuntime passes `--workers 0` (the monitor's default is 1: one window of the
    stream); a word would not do: KServe reads --workers from the command line as a number too."""
    from flowline.pipelines.cli import serve

    monkeypatch.setattr(options, "default_workers", lambda: 3)
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    workers = {(monitor, given): serve._workers(parser.parse_args(["serve", "PACKAGE", *monitor, *given]))
               for monitor in ((), ("--drift-monitor",)) for given in ((), ("--workers", "0"), ("--workers", "2"))}
    assert workers == {((), ()): 3, ((), ("--workers", "0")): 3, ((), ("--workers", "2")): 2,
                       (("--drift-monitor",), ()): 1, (("--drift-monitor",), ("--workers", "0")): 3,
                       (("--drift-monitor",), ("--workers", "2")): 2}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_with_one_worker_or_several(churn_package, workers):
    """With --workers 1 a taken port was a 43-line traceback from KServe and uvicorn (the README audit); several
    workers' supervisor already said it in one line."""
    import socket
    import subprocess

    with socket.create_server((LOOPBACK, 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([*SERVE_COMMAND, str(churn_package), "--host", LOOPBACK, "--port", str(port),
                               "--workers", workers], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"flowline: cannot listen on {LOOPBACK}:{port}: [Errno 98] Address already in use"), done.stderr
