"""The drift monitor's events/s: single-row payload-logger CloudEvents at 16 connections, with wrk.

    python tests/benchmark/drift_bench.py PACKAGE_DIR [--workers N] [--seconds 10] [--rounds 1]

The request is built as serving_bench.py's drift part builds it: the package's first training row as a
v1 body, with the binary-mode ce-* headers KServe's payload logger sends. Reports, per round, events/s,
p99 and the server's CPU time per event (user + system time of its processes over the run, from /proc):
on a shared machine the load moves events/s far more than CPU per event, and 1e6 / (CPU us per event) is
the events/s one core gives.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flowline.inference_services.local_server import LOOPBACK, SERVE_COMMAND, free_port, running_process
from flowline.pipelines.demo import first_record

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_bench import CLOUDEVENT_HEADERS, cpu_seconds, wrk_throughput  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    event = json.dumps({"instances": [first_record(str(args.package))]}).encode()
    port = free_port()
    command = [*SERVE_COMMAND, "--drift-monitor", str(args.package), "--host", LOOPBACK, "--port", str(port)]
    if args.workers > 1:
        command += ["--workers", str(args.workers)]
    path = "/v1/models/" + json.loads((args.package / "use_case.json").read_text())["name"] + "-drift:predict"
    with running_process(command, f"http://{LOOPBACK}:{port}/v2/health/ready") as server:
        wrk_throughput(port, path, event, args.connections, 2, headers=CLOUDEVENT_HEADERS)  # warm-up
        for _ in range(args.rounds):
            before = cpu_seconds(server.pid)
            result = wrk_throughput(port, path, event, args.connections, args.seconds, headers=CLOUDEVENT_HEADERS)
            events = result["requests_per_second"] * args.seconds
            cpu_us = (cpu_seconds(server.pid) - before) / events * 1e6
            print(json.dumps({"workers": args.workers, "events_per_second": result["requests_per_second"],
                              "events_per_second_per_worker": round(result["requests_per_second"] / args.workers),
                              "p99_ms": result["p99_ms"], "server_cpu_us_per_event": round(cpu_us),
                              "events_per_cpu_second": round(1e6 / cpu_us), "load_average": os.getloadavg()[0]}),
                  flush=True)


if __name__ == "__main__":
    main()
