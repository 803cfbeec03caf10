"""A real Redis server on loopback for tests: Debian's redis-server, on a free port, with no disk persistence.

`make tools` unpacks Debian's redis-server (and the libraries it links) into build/tools/redis without
installing it, so no service starts; FLOWLINE_REDIS_SERVER names another binary, and PATH is the last resort.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from installed_tools import installed_tool

REDIS_ENV = "FLOWLINE_REDIS_SERVER"
UNPACKED = Path(__file__).resolve().parents[1] / "build" / "tools" / "redis" / "usr" / "bin" / "redis-server"
STARTUP_TIMEOUT_S = 20.0


def redis_server_binary() -> str:
    """The redis-server to run: $FLOWLINE_REDIS_SERVER, the one `make tools` unpacked, or PATH's."""
    if not os.environ.get(REDIS_ENV) and UNPACKED.is_file():
        return str(UNPACKED)
    return installed_tool("redis-server", REDIS_ENV)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_redis(binary: str, folder: Path, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start redis-server on a free loopback port (with `extra_args`); yield its URL (redis://127.0.0.1:PORT/0);
    stop it."""
    port = _free_port()
    libraries = Path(binary).resolve().parents[1] / "lib" / "x86_64-linux-gnu"  # an unpacked package's libraries
    environment = {**os.environ, "LD_LIBRARY_PATH": str(libraries)} if (libraries / "liblzf.so.1").exists() \
        else dict(os.environ)
    log = folder / "redis.log"
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(log), *extra_args],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}: "
                                   f"{log.read_text() if log.exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {port} within {STARTUP_TIMEOUT_S} s")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
