"""`make bench`: single-row Open Inference Protocol v2 over loopback, flowline against its peers.

    python tests/benchmark/serving_bench.py RUN_SUMMARY_JSON --mlserver-venv DIR --out FILE

`make bench` gives it churn trained with the XGBoost family alone, so that both servers answer
with the same model: the default churn package may hold no XGBoost member (at seed 42 it is now
the linear model alone), and MLServer's XGBoost runtime serves only that.

Peers, measured one after another in the same run:
- flowline: the package as served, raw columns in (one tensor per column), checks,
  FeatureSet and the whole model (one candidate or a blend of several) included;
- MLServer + mlserver-xgboost (its own venv, OMP_NUM_THREADS=1: its best setting here),
  serving the package's XGBoost member alone, given the already-encoded FP32 feature
  row, so it is spared the feature work and the other members;
- the HTTP floor: bare Starlette answering a constant.

flowline runs with `flowline serve`'s default workers (one per CPU this machine or container
gives it), MLServer with its defaults.

For each: sequential latency (p50, p99 over 2,000 requests, each timed on the client,
after a warm-up), throughput at 16 and at 64 connections for 20 s each with wrk, and the
resident memory of the server's processes afterwards (VmRSS of the process and every
descendant: flowline's parent, workers and multiprocessing's resource tracker). Then the
drift monitor's throughput: single-row payload-logger CloudEvents, as KServe's logger sends
them, at the first connection count, with the events per CPU-second of the monitor's process (what one
core gives). Writes JSON, prints a Markdown table with the ratios against MLServer, and a line saying
whether each of issue 23's goals holds in this run.
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
)
from flowline.inference_services.model import LoadedPackage
from flowline.inference_services.options import default_workers
from flowline.pipelines.demo import first_record, v2_request

HERE = Path(__file__).resolve().parent
WARMUP = 200
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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


def process_tree_rss_mib(pid: int) -> list[dict]:
    """VmRSS of `pid` and of every process descending from it, from /proc, each with its command line."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop(0)
        try:
            status = Path(f"/proc/{current}/status").read_text()
            command = Path(f"/proc/{current}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))
        tree.append({"pid": current, "rss_mib": round(rss_kib / 1024, 1), "command": command[:160]})
        pending.extend(children.get(current, []))
    return tree


def measure(name: str, port: int, pid: int, path: str, body: bytes, args: argparse.Namespace) -> dict:
    print(f"bench: {name}: {args.requests} sequential requests, then {' and '.join(map(str, args.connections))} "
          f"connections for {args.seconds} s each", flush=True)
    latencies = sequential_latencies_ms(port, path, body, args.requests)
    result = {
        "sequential": {
            "requests": len(latencies),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "mean_ms": float(latencies.mean()),
        },
        **{f"concurrency_{connections}": wrk_throughput(port, path, body, connections, args.seconds)
           for connections in args.connections},
        "request_bytes": len(body),
    }
    processes = process_tree_rss_mib(pid)
    result["rss"] = {"total_mib": round(sum(p["rss_mib"] for p in processes), 1), "processes": processes}
    print(f"bench: {name}: {json.dumps(result)}", flush=True)
    return result


def answer_of(port: int, path: str, body: bytes) -> float:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    outputs = json.loads(connection.getresponse().read())["outputs"]
    return float(np.asarray(outputs[0]["data"]).ravel()[0])


@contextlib.contextmanager
def flowline_server(package: Path, log_dir: Path) -> Iterator[tuple[int, int]]:
    """`flowline serve` with its default workers; yields its port and pid."""
    port = free_port()
    command = [*SERVE_COMMAND, str(package), "--host", LOOPBACK, "--port", str(port)]
    with running_process(command, f"http://{LOOPBACK}:{port}/v2/health/ready", str(log_dir / "flowline.log")) as process:
        yield port, process.pid


@contextlib.contextmanager
def mlserver(model_file: Path, venv: Path, log_dir: Path) -> Iterator[tuple[int, int]]:
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
                             str(log_dir / "mlserver.log"), env=env) as process:
            yield port, process.pid


@contextlib.contextmanager
def drift_monitor(package: Path, log_dir: Path) -> Iterator[tuple[int, int]]:
    """The drift monitor with its default (one worker: one window of the whole stream); yields its port and pid."""
    port = free_port()
    command = [*SERVE_COMMAND, "--drift-monitor", str(package),
               "--host", LOOPBACK, "--port", str(port)]
    with running_process(command, f"http://{LOOPBACK}:{port}/v2/health/ready",
                         str(log_dir / "drift-monitor.log")) as process:
        yield port, process.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children, alive now."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    total = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += cpu_seconds(int(child))
    return total


@contextlib.contextmanager
def floor(log_dir: Path) -> Iterator[tuple[int, int]]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "floor_app:app", "--app-dir", str(HERE), "--host", LOOPBACK,
               "--port", str(port), "--no-access-log", "--log-level", "warning"]
    with running_process(command, f"http://{LOOPBACK}:{port}/v2/health/ready", str(log_dir / "floor.log")) as process:
        yield port, process.pid


def markdown_table(report: dict) -> str:
    counts = report["settings"]["connections"]
    reference = report["peers"]["mlserver"]
    header = "| server | sequential p50 | sequential p99 | " + " | ".join(
        f"requests/s at {c} | p99 at {c} | vs MLServer at {c}" for c in counts) + " | RSS (processes) |"
    lines = [header, "|---" * (4 + 3 * len(counts)) + "|"]
    for name, peer in report["peers"].items():
        cells = [f"{name}", f"{peer['sequential']['p50_ms']:.2f} ms", f"{peer['sequential']['p99_ms']:.2f} ms"]
        for c in counts:
            at = peer[f"concurrency_{c}"]
            ratio = at["requests_per_second"] / reference[f"concurrency_{c}"]["requests_per_second"]
            cells += [f"{at['requests_per_second']:,.0f}", f"{at['p99_ms']:.1f} ms", f"{ratio:.2f}x"]
        rss = peer["rss"]
        parts = " + ".join(f"{process['rss_mib']:.0f}" for process in rss["processes"])
        cells.append(f"{rss['total_mib']:,.0f} MiB ({parts})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_line(report: dict) -> str:
    """Issue 23's goals, each with this run's figure: 2x MLServer's throughput and at most half its p99 at the
    first connection count, a sequential p99 of at most 2 ms, and 5,000 drift events/s per core."""
    first = report["settings"]["connections"][0]
    ratios, flowline, drift = report["ratios_vs_mlserver"], report["peers"]["flowline"], report["drift_monitor"]
    checks = [
        (f"throughput at {first} >= 2x MLServer", f"{ratios[f'throughput_at_{first}']:.2f}x",
         ratios[f"throughput_at_{first}"] >= 2),
        (f"p99 at {first} <= 0.5x MLServer's", f"{ratios[f'p99_at_{first}']:.2f}x", ratios[f"p99_at_{first}"] <= 0.5),
        ("sequential p99 <= 2 ms", f"{flowline['sequential']['p99_ms']:.2f} ms", flowline["sequential"]["p99_ms"] <= 2),
        ("drift monitor >= 5,000 events/s per core",
         f"{min(drift['events_per_second'], drift['events_per_cpu_second']):,.0f}",
         min(drift["events_per_second"], drift["events_per_cpu_second"]) >= 5000),
    ]
    return "goals: " + "; ".join(f"{name}: {value} {'met' if met else 'NOT met'}" for name, value, met in checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="the JSON summary of a `flowline run`")
    parser.add_argument("--mlserver-venv", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()

    package = Path(json.loads(Path(args.summary).read_text())["package"])
    loaded = LoadedPackage.load(package)
    members = {member.name: member for member in loaded.model.members}  # a bagged family's are named by fold
    if "xgboost" not in members:
        sys.exit(f"bench: the package's model has no single XGBoost member ({', '.join(members)}): MLServer cannot "
                 f"serve it")
    record = first_record(str(package))
    encoded = loaded.feature_set.transform_record(record)
    xgboost_answer = float(1 / (1 + np.exp(-members["xgboost"].model.margin(encoded[None, :])[0])))
    raw_body = json.dumps(v2_request(record, {"inputs": loaded.input_types()})).encode()
    encoded_body = json.dumps({"inputs": [{"name": "features", "shape": [1, loaded.feature_set.width],
                                           "datatype": "FP32", "data": encoded.tolist()}]}).encode()
    log_dir = args.out.parent
    log_dir.mkdir(parents=True, exist_ok=True)

    peers, answers = {}, {}
    with flowline_server(package, log_dir) as (port, pid):
        answers["flowline"] = answer_of(port, "/v2/models/churn/infer", raw_body)
        peers["flowline"] = measure("flowline", port, pid, "/v2/models/churn/infer", raw_body, args)
    with mlserver(package / MODEL_DIR / "xgboost.json", args.mlserver_venv, log_dir) as (port, pid):
        answers["mlserver"] = answer_of(port, "/v2/models/churn/infer", encoded_body)
        peers["mlserver"] = measure("mlserver", port, pid, "/v2/models/churn/infer", encoded_body, args)
    with floor(log_dir) as (port, pid):
        peers["http floor"] = measure("http floor", port, pid, "/v2/models/floor/infer", encoded_body, args)
    drift_connections = args.connections[0]
    with drift_monitor(package, log_dir) as (port, pid):
        print(f"bench: drift monitor: single-row CloudEvents, {drift_connections} connections for {args.seconds} s",
              flush=True)
        event = json.dumps({"instances": [record]}).encode()
        before = cpu_seconds(pid)
        drift = wrk_throughput(port, f"/v1/models/{loaded.use_case.name}-drift:predict", event, drift_connections,
                               args.seconds, headers=CLOUDEVENT_HEADERS)
        events = drift["requests_per_second"] * args.seconds
        drift = {"events_per_second": drift.pop("requests_per_second"), **drift,
                 # events per CPU-second of the monitor's processes: what one core of the server gives
                 "events_per_cpu_second": round(events / (cpu_seconds(pid) - before))}
        print(f"bench: drift monitor: {json.dumps(drift)}", flush=True)

    flowline, reference = peers["flowline"], peers["mlserver"]
    report = {
        "benchmark": "single-row Open Inference Protocol v2 over loopback",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "cpus_available": len(os.sched_getaffinity(0)),
                    "flowline_workers": default_workers(), "python": platform.python_version()},
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
            "sequential_p99": flowline["sequential"]["p99_ms"] / reference["sequential"]["p99_ms"],
            **{name: flowline[f"concurrency_{c}"][field] / reference[f"concurrency_{c}"][field]
               for c in args.connections
               for name, field in ((f"throughput_at_{c}", "requests_per_second"), (f"p99_at_{c}", "p99_ms"))},
            "rss": flowline["rss"]["total_mib"] / reference["rss"]["total_mib"],
        },
    }
    args.out.write_text(json.dumps(report, indent=1))
    print("\n" + markdown_table(report))
    print(f"\ndrift monitor: {drift['events_per_second']:,.0f} events/s at {drift_connections} connections "
          f"(one process), {drift['events_per_cpu_second']:,.0f} events per CPU-second, p99 {drift['p99_ms']:.1f} ms")
    print("\n" + goals_line(report))
    print(f"MLServer gives the XGBoost member's answer: {report['mlserver_matches_the_xgboost_member']}; "
          f"flowline gives its in-process answer: {report['flowline_matches_in_process']}; report: {args.out}")


if __name__ == "__main__":
    main()
