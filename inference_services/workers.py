"""`flowline serve --workers N` (N > 1): N worker processes answering on one port.

`flowline serve` builds the models (not loaded yet), writes them to this server start's state folder
and replaces itself (exec, same pid) by a lean supervisor, `python -m flowline.inference_services.workers`,
which imports nothing but the standard library: the command line's imports (pandas, KServe) would
otherwise cost the parent as much memory as a worker. The supervisor binds the port once and hands
the listening socket to N workers, started fresh (multiprocessing's spawn). Each worker loads and
verifies its packages itself and serves with KServe's REST server on that socket, taking connections
one at a time, the least busy worker first (server.accept_one_at_a_time), so that connections kept
open spread evenly; the port stays bound while they start.

The state folder holds the models, prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR,
set before the workers start, so that /metrics sums every worker's counters and histograms,
metrics.py) and the repository orders (repository_sync.py); the supervisor removes it at exit.

The parent supervises: SIGTERM or SIGINT is passed to every worker, which finishes its requests
within KServe's grace period (then it is killed), and the server exits 0. A worker that exits on its
own (a crash, the OOM killer, a package refused at start) is reported, the others are stopped and the
server exits 1: Kubernetes then restarts the container, as it would a single-process server.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Sequence

from flowline.inference_services.listening import listening

if TYPE_CHECKING:
    from kserve import Model

log = logging.getLogger("flowline.serving")

MODULE = "flowline.inference_services.workers"
MODELS_FILE = "models.pickle"  # written and read by flowline serve's own processes, never by anyone else
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
GRACE_S = 30  # KServe's default grace period, which each worker's uvicorn takes to finish its requests
KILL_AFTER_S = GRACE_S + 5
spawn = multiprocessing.get_context("spawn")
multiprocessing.allow_connection_pickling()  # the listening socket travels to each worker


def exec_supervisor(models: Sequence[Model], host: str, port: int, access_log: bool, workers: int,
                    max_body_bytes: int) -> NoReturn:
    """Write the models to a new state folder and become the supervisor of `workers` processes serving them."""
    from flowline.inference_services.options import repository_token

    repository_token()  # a bad token stops the start, before the workers load the packages
    state = Path(tempfile.mkdtemp(prefix="flowline-serve-"))
    (state / MODELS_FILE).write_bytes(pickle.dumps(list(models)))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", MODULE, str(state), host, str(port), str(workers),
                              str(max_body_bytes), *(["--access-log"] if access_log else [])])


def main(argv: Sequence[str]) -> int:
    """The supervisor's command line (exec_supervisor's)."""
    parser = argparse.ArgumentParser(prog=MODULE)
    parser.add_argument("state", type=Path)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("workers", type=int)
    parser.add_argument("max_body_bytes", type=int)
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    return serve_workers(args.state, args.host, args.port, args.access_log, args.workers, args.max_body_bytes)


def serve_workers(state: Path, host: str, port: int, access_log: bool, workers: int, max_body_bytes: int) -> int:
    """Serve the models in `state` from `workers` processes on host:port until SIGTERM (exit status 0) or
    until a worker dies (1); remove `state` at exit."""
    try:
        listener = listening(host, port)  # the one socket every worker accepts on
        if listener is None:
            return 1
        (state / "metrics").mkdir()
        (state / "repository").mkdir()
        os.environ[MULTIPROC_DIR_ENV] = str(state / "metrics")  # the workers inherit it
        processes = [spawn.Process(target=run_worker, name=f"flowline-worker-{index}",
                                   args=(state, host, access_log, max_body_bytes, listener, index, workers))
                     for index in range(workers)]
        for process in processes:
            process.start()
        print(f"flowline: serving on {host}:{port} from {workers} workers (pids "
              f"{', '.join(str(process.pid) for process in processes)}), their state in {state}", flush=True)
        return supervise(processes, stop_listening=listener.close)  # which closes it as the stop begins
    finally:
        shutil.rmtree(state, ignore_errors=True)


def run_worker(state: Path, host: str, access_log: bool, max_body_bytes: int, listener: socket.socket, index: int,
               workers: int) -> None:
    """One worker: load and verify the packages, then serve on the shared socket, following the others' loads."""
    from flowline import one_line_warnings
    from flowline.inference_services.options import repository_token
    from flowline.inference_services.repository_sync import WorkerSync
    from flowline.inference_services.server import serve_here

    one_line_warnings()  # a fresh process: as the command says them, not as source listings
    models = pickle.loads((state / MODELS_FILE).read_bytes())
    sync = WorkerSync(state / "repository", index, workers, [model.name for model in models])
    serve_here(models, host, listener.getsockname()[1], access_log, repository_token(), max_body_bytes,
               sockets=[listener], sync=sync)


def supervise(processes: list[multiprocessing.process.BaseProcess], stop_listening: Callable[[], None]) -> int:
    """Wait for the workers; stop them all on SIGTERM/SIGINT or when one dies. 1 if one died, else 0.
    `stop_listening` closes the supervisor's copy of the shared socket as the stop begins: each worker closes its
    own as it stops accepting, and while any copy stays open the kernel would still take new connections into a
    backlog nobody reads, to reset them after the drain (a single process refuses them at once)."""
    stop_at: list[float] = []  # when the stop began; empty while serving
    failed = False

    def stop(*_) -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
            stop_listening()
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


if __name__ == "__main__":
    from flowline.inference_services import workers as supervisor  # by its name, so the workers find run_worker

    sys.exit(supervisor.main(sys.argv[1:]))
