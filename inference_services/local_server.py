"""Running the model server as a child process on loopback: for the demo, tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

LOOPBACK = "127.0.0.1"
# `flowline serve`, started with this interpreter: the model server, or with --drift-monitor the monitor.
SERVE_COMMAND = (sys.executable, "-m", "flowline.pipelines.cli", "serve")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_until_ready(ready_url: str, process: subprocess.Popen, timeout: float, log_path: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = Path(log_path).read_text()[-3000:]
            raise RuntimeError(f"the server exited with code {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{ready_url} did not answer 200 within {timeout:.0f} s")


@contextlib.contextmanager
def running_process(
    command: Sequence[str],
    ready_url: str,
    log_path: str | None = None,
    ready_timeout: float = 90,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen]:
    """Start an HTTP server process, wait until `ready_url` answers 200, and stop it on exit. Its output goes to
    `log_path`, else to a temporary file kept while it runs: a server that cannot start says why."""
    with tempfile.TemporaryDirectory(prefix="flowline-server-") as folder:
        yield from _running(command, ready_url, log_path or os.path.join(folder, "server.log"), ready_timeout, env)


def _running(command: Sequence[str], ready_url: str, log_path: str, ready_timeout: float,
             env: dict[str, str] | None) -> Iterator[subprocess.Popen]:
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until_ready(ready_url, process, ready_timeout, log_path)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def running_server(
    packages: Sequence[str],
    port: int | None = None,
    extra_args: Sequence[str] = (),
    log_path: str | None = None,
    ready_timeout: float = 90,
    env: dict[str, str] | None = None,
    workers: int | None = 1,
) -> Iterator[str]:
    """Start `flowline serve PACKAGES` on loopback; yield its base URL; stop it.
    `env`: the process's whole environment (default: this one's); `workers`: its --workers (one process by
    default; None: `flowline serve`'s default, one per CPU)."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    command = [*SERVE_COMMAND, *packages, "--host", LOOPBACK, "--port", str(port),
               *(["--workers", str(workers)] if workers is not None else []), *extra_args]
    with running_process(command, f"{url}/v2/health/ready", log_path, ready_timeout, env):
        yield url
