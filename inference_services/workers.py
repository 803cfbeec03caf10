"""`flowline serve --workers N` (N > 1): N worker processes answering on one port.

The parent binds the port once and hands the listening socket to N workers, started fresh
(multiprocessing's spawn: no state forked from the parent). Each worker loads and verifies its
packages itself and serves with KServe's REST server on that socket; the kernel gives each new
connection to one of them, and the port stays bound while they start.

Before starting them, the parent creates this server start's state folder: prometheus_client's
multiprocess files (PROMETHEUS_MULTIPROC_DIR, so that /metrics sums every worker's counters and
histograms, metrics.py) and the repository orders (repository_sync.py); it removes it at exit.

The parent supervises: SIGTERM or SIGINT is passed to every worker, which finishes its requests
within KServe's grace period (then it is killed), and the server exits 0. A worker that exits on its
own (a crash, the OOM killer, a package refused at start) is reported, the others are stopped and the
server exits 1: Kubernetes then restarts the container, as it would a single-process server.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Sequence

from kserve import Model

log = logging.getLogger("flowline.serving")

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
GRACE_S = 30  # KServe's default grace period, which each worker's uvicorn takes to finish its requests
KILL_AFTER_S = GRACE_S + 5
BACKLOG = 2048  # uvicorn's default
spawn = multiprocessing.get_context("spawn")
multiprocessing.allow_connection_pickling()  # the listening socket travels to each worker


def listen(host: str, port: int) -> socket.socket:
    """The one listening socket every worker accepts on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=BACKLOG)


def serve_workers(models: Sequence[Model], host: str, port: int, access_log: bool, token: str | None,
                  workers: int) -> int:
    """Serve `models` from `workers` processes on host:port until SIGTERM (exit status 0) or until a worker
    dies (1)."""
    listener = listen(host, port)
    state = Path(tempfile.mkdtemp(prefix="flowline-serve-"))
    try:
        (state / "metrics").mkdir()
        (state / "repository").mkdir()
        os.environ[MULTIPROC_DIR_ENV] = str(state / "metrics")  # the workers inherit it
        processes = [spawn.Process(target=run_worker, name=f"flowline-worker-{index}",
                                   args=(list(models), host, access_log, token, listener, state / "repository",
                                         index, workers))
                     for index in range(workers)]
        for process in processes:
            process.start()
        log.info("serving on %s:%d with %d workers (pids %s)", host, port, workers,
                 ", ".join(str(process.pid) for process in processes))
        return supervise(processes)
    finally:
        listener.close()
        shutil.rmtree(state, ignore_errors=True)


def run_worker(models: list[Model], host: str, access_log: bool, token: str | None, listener: socket.socket,
               repository: Path, index: int, workers: int) -> None:
    """One worker: load and verify the packages, then serve on the shared socket, following the others' loads."""
    from flowline.inference_services.repository_sync import WorkerSync
    from flowline.inference_services.server import serve_here

    sync = WorkerSync(repository, index, workers, [model.name for model in models])
    serve_here(models, host, listener.getsockname()[1], access_log, token, sockets=[listener], sync=sync)


def supervise(processes: list[multiprocessing.process.BaseProcess]) -> int:
    """Wait for the workers; stop them all on SIGTERM/SIGINT or when one dies. 1 if one died, else 0."""
    stop_at: list[float] = []  # when the stop began; empty while serving
    failed = False

    def stop(*_) -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
            for process in processes:
                if process.exitcode is None:
                    os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    running = list(processes)
    while running:
        timeout = None if not stop_at else max(0.0, stop_at[0] + KILL_AFTER_S - time.monotonic())
        ended = multiprocessing.connection.wait([process.sentinel for process in running], timeout)
        for process in [p for p in running if p.sentinel in ended]:
            process.join()
            running.remove(process)
            if not stop_at:
                failed = True
                log.error("worker %s (pid %d) %s: stopping the server", process.name, process.pid,
                          _how_it_ended(process.exitcode))
                stop()
        if stop_at and not ended:  # the grace period is over
            for process in running:
                log.warning("worker %s (pid %d) did not stop within %d s: killed", process.name, process.pid,
                            KILL_AFTER_S)
                process.kill()
    return 1 if failed else 0


def _how_it_ended(exitcode: int) -> str:
    return f"was killed by {signal.Signals(-exitcode).name}" if exitcode < 0 else f"exited with code {exitcode}"
