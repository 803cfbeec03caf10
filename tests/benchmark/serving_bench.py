"""`make bench`: single-row Open Inference Protocol v2 over loopback, flowline against its peers.

    python tests/benchmark/serving_bench.py RUN_SUMMARY_JSON --mlserver-venv DIR --out FILE

Peers, measured one after another in the same run:
- flowline: the package as served, raw columns in (one tensor per column), checks,
  FeatureSet and the whole model (one candidate or a blend of several) included;
- MLServer + mlserver-xgboost (its own venv, OMP_NUM_THREADS=1: its best setting here),
  serving the package's XGBoost member alone, given the already-encoded FP32 feature
  row, so it is spared the feature work and the other members;
- the HTTP floor: bare Starlette answering a constant.

For each: sequential latency (p50, p99 over 2,000 requests, each timed on the client,
after a warm-up) and throughput at 16 connections for 20 s with wrk. Then the drift
monitor's throughput: single-row payload-logger CloudEvents, as KServe's logger sends
them, at 16 connections. Writes JSON and prints a Markdown table with the ratios
against MLServer.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np

from flowline.package.format import MODEL_DIR
from flowline.inference_services.local_server import (
    LOOPBACK,
    SERVE_COMMAND,
    free_port,
    running_process,
    running_server,
)
from flowline.inference_services.model import LoadedPackage
from flowline.pipelines.demo import first_record, v2_request

HERE = Path(__file__).resolve().parent
WARMUP = 200
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
# What KServe's payload logger sends with each request event (binary-mode CloudEvent).
CLOUDEVENT_HEADERS = {"ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.request",
                      "ce-source": "http://localhost:9081/", "ce-id": "bench", "ce-inferenceservicename": "churn"}


def sequential_latencies_ms(port: int, path: str, body: bytes, count: int) -> np.ndarray:
    """Time each request on one kept-alive connection, as a single client sees it."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    headers = {"Content-Type": "application/json"}
    timings = []
    for index in range(WARMUP + count):
        started = time.perf_counter()
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        if index >= WARMUP:
            timings.append(elapsed * 1e3)
    connection.close()
    return np.array(timings)


def wrk_throughput(port: int, path: str, body: bytes, connections: int, seconds: int,
                   headers: dict[str, str] | None = None, request_lua: str = "", timeout_s: int = 2) -> dict:
    """wrk POSTing `body` (or what `request_lua`, a Lua `request` function, builds per request); a request
    slower than `timeout_s` (wrk's default 2 s) is a failure."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "body.json").write_bytes(body)
        script = Path(folder) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n' + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
            + f'local f = io.open("{folder}/body.json", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
            + request_lua
        )
        output = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", "--latency",
             "-s", str(script), f"http://{LOOPBACK}:{port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failed requests:\n{output}")

    def percentile(name: str) -> float:
        value, unit = re.search(rf"^\s+{name}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()  # "1.50s " too
        return float(value) * UNITS[unit]

    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": percentile("50"),
        "p99_ms": percentile("99"),
    }


def measure(name: str, port: int, path: str, body: bytes, args: argparse.Namespace) -> dict:
    print(f"bench: {name}: {args.requests} sequential requests, then {args.connections} connections "
          f"for {args.seconds} s", flush=True)
    latencies = sequential_latencies_ms(port, path, body, args.requests)
    result = {
        "sequential": {
            "requests": len(latencies),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "mean_ms": float(latencies.mean()),
        },
        f"concurrency_{args.connections}": wrk_throughput(port, path, body, args.connections, args.seconds),
        "request_bytes": len(body),
    }
    print(f"bench: {name}: {json.dumps(result)}", flush=True)
    return result


def answer_of(port: int, path: str, body: bytes) -> float:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    outputs = json.loads(connection.getresponse().read())["outputs"]
    return float(np.asarray(outputs[0]["data"]).ravel()[0])


@contextlib.contextmanager
def mlserver(model_file: Path, venv: Path, log_dir: Path) -> Iterator[int]:
    """MLServer serving an XGBoost model file, with its best setting (OMP_NUM_THREADS=1)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        model_dir = Path(folder) / "churn"
        model_dir.mkdir()
        shutil.copyfile(model_file, model_dir / "model.json")
        (model_dir / "model-settings.json").write_text(json.dumps({
            "name": "churn", "implementation": "mlserver_xgboost.XGBoostModel",
            "parameters": {"uri": "./model.json"},
        }))
        (Path(folder) / "settings.json").write_text(json.dumps({
            "host": LOOPBACK, "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        }))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        command = [str(venv / "bin" / "mlserver"), "start", folder]
        with running_process(command, f"http://{LOOPBACK}:{port}/v2/models/churn/ready",
                             str(log_dir / "mlserver.log"), env=env):
            yield port


@contextlib.contextmanager
def drift_monitor(package: Path, log_dir: Path) -> Iterator[int]:
    port = free_port()
    command = [*SERVE_COMMAND, "--drift-monitor", str(package),
               "--host", LOOPBACK, "--port", str(port)]
    with running_process(command, f"http://{LOOPBACK}:{port}/v2/health/ready", str(log_dir / "drift-monitor.log")):
        yield port


@contextlib.contextmanager
def floor(log_dir: Path) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "floor_app:app", "--app-dir", str(HERE), "--host", LOOPBACK,
               "--port", str(port), "--no-access-log", "--log-level", "warning"]
    with running_process(command, f"http://{LOOPBACK}:{port}/v2/health/ready", str(log_dir / "floor.log")):
        yield port


def markdown_table(report: dict) -> str:
    key = f"concurrency_{report['settings']['connections']}"
    reference = report["peers"]["mlserver"]
    lines = [
        f"| server | sequential p50 | sequential p99 | requests/s at {report['settings']['connections']} "
        f"connections | p99 at {report['settings']['connections']} | throughput vs MLServer |",
        "|---|---|---|---|---|---|",
    ]
    for name, peer in report["peers"].items():
        ratio = peer[key]["requests_per_second"] / reference[key]["requests_per_second"]
        lines.append(
            f"| {name} | {peer['sequential']['p50_ms']:.2f} ms | {peer['sequential']['p99_ms']:.2f} ms | "
            f"{peer[key]['requests_per_second']:,.0f} | {peer[key]['p99_ms']:.1f} ms | {ratio:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="the JSON summary of a `flowline run`")
    parser.add_argument("--mlserver-venv", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()

    package = Path(json.loads(Path(args.summary).read_text())["package"])
    loaded = LoadedPackage.load(package)
    members = {member.family: member for member in loaded.model.members}
    if "xgboost" not in members:
        sys.exit(f"bench: the package's model has no XGBoost member ({loaded.model.families}): MLServer cannot serve it")
    record = first_record(str(package))
    encoded = loaded.feature_set.transform_record(record)
    xgboost_answer = float(1 / (1 + np.exp(-members["xgboost"].model.margin(encoded[None, :])[0])))
    raw_body = json.dumps(v2_request(record, {"inputs": loaded.input_types()})).encode()
    encoded_body = json.dumps({"inputs": [{"name": "features", "shape": [1, loaded.feature_set.width],
                                           "datatype": "FP32", "data": encoded.tolist()}]}).encode()
    log_dir = args.out.parent
    log_dir.mkdir(parents=True, exist_ok=True)

    peers, answers = {}, {}
    with running_server([str(package)], log_path=str(log_dir / "flowline.log")) as url:
        port = int(url.rsplit(":", 1)[1])
        answers["flowline"] = answer_of(port, "/v2/models/churn/infer", raw_body)
        peers["flowline"] = measure("flowline", port, "/v2/models/churn/infer", raw_body, args)
    with mlserver(package / MODEL_DIR / "xgboost.json", args.mlserver_venv, log_dir) as port:
        answers["mlserver"] = answer_of(port, "/v2/models/churn/infer", encoded_body)
        peers["mlserver"] = measure("mlserver", port, "/v2/models/churn/infer", encoded_body, args)
    with floor(log_dir) as port:
        peers["http floor"] = measure("http floor", port, "/v2/models/floor/infer", encoded_body, args)
    with drift_monitor(package, log_dir) as port:
        print(f"bench: drift monitor: single-row CloudEvents, {args.connections} connections for {args.seconds} s",
              flush=True)
        event = json.dumps({"instances": [record]}).encode()
        drift = wrk_throughput(port, f"/v1/models/{loaded.use_case.name}-drift:predict", event, args.connections,
                               args.seconds, headers=CLOUDEVENT_HEADERS)
        drift = {"events_per_second": drift.pop("requests_per_second"), **drift}
        print(f"bench: drift monitor: {json.dumps(drift)}", flush=True)

    key = f"concurrency_{args.connections}"
    flowline, reference = peers["flowline"], peers["mlserver"]
    report = {
        "benchmark": "single-row Open Inference Protocol v2 over loopback",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"requests": args.requests, "warmup": WARMUP, "connections": args.connections,
                     "seconds": args.seconds},
        "model": {"package": str(package), "version": loaded.version, "features": loaded.feature_set.width,
                  **loaded.model.describe()},
        "answers": {"flowline": answers["flowline"], "mlserver": answers["mlserver"],
                    "xgboost_member_in_process": xgboost_answer},
        "mlserver_matches_the_xgboost_member": bool(np.isclose(answers["mlserver"], xgboost_answer, rtol=1e-6)),
        "flowline_matches_in_process": bool(
            np.float32(answers["flowline"]) == np.float32(loaded.model.predict(encoded[None, :])[0])),
        "peers": peers,
        "drift_monitor": drift,
        "ratios_vs_mlserver": {
            "throughput": flowline[key]["requests_per_second"] / reference[key]["requests_per_second"],
            "sequential_p99": flowline["sequential"]["p99_ms"] / reference["sequential"]["p99_ms"],
            f"p99_at_{args.connections}": flowline[key]["p99_ms"] / reference[key]["p99_ms"],
        },
    }
    args.out.write_text(json.dumps(report, indent=1))
    print("\n" + markdown_table(report))
    print(f"\ndrift monitor: {drift['events_per_second']:,.0f} events/s at {args.connections} connections, "
          f"p99 {drift['p99_ms']:.1f} ms")
    print(f"MLServer gives the XGBoost member's answer: {report['mlserver_matches_the_xgboost_member']}; "
          f"flowline gives its in-process answer: {report['flowline_matches_in_process']}; report: {args.out}")


if __name__ == "__main__":
    main()
