"""Server settings: bind host, port, batch and explain limits, adaptive batching, worker processes, the repository
token, and naming a package.

`flowline serve` (pipelines/cli/serve.py) reads them; kept free of kserve imports so that the
command line starts quickly.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from flowline.package.format import read_manifest
from flowline.storage import is_s3

HOST_ENV = "FLOWLINE_SERVE_HOST"
REPOSITORY_TOKEN_ENV = "FLOWLINE_REPOSITORY_TOKEN"
MIN_TOKEN_LENGTH = 16
MIN_TOKEN_SYMBOLS = 10  # different characters: `openssl rand -hex 32` gives 16, a repeated pattern few
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BATCH = 1024
# An explain costs far more per row than a predict, and one explain at a time runs per worker: the rows an explain
# request may carry. Measured in process, one thread: fraud-claims' blend (three averaged CatBoost trials first)
# about 0.15 s a row, 64 rows in 9 s; churn's linear + forest 1 ms a row; an MLP alone 2-4 ms a row (32 permutations).
DEFAULT_MAX_EXPLAIN_ROWS = 64
# Adaptive batching (batching.py): concurrent requests wait at most this long to share a transform and a predict
# (a lone request waits one event-loop turn, not this), up to this many rows; a wait of 0 turns batching off.
DEFAULT_BATCH_WAIT_MS = 1.0
DEFAULT_MAX_BATCH_ROWS = 64
# A request's body above this is refused with 413, none of it kept (body_limit.py): 1,024 records of a wide use
# case take about 2 MB as JSON, and parsing a body takes several times its size in memory.
DEFAULT_MAX_BODY_MB = 16
DEFAULT_MAX_BODY_BYTES = DEFAULT_MAX_BODY_MB << 20
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD", or "max PERIOD" for no limit


def default_host() -> str:
    """127.0.0.1 on a laptop; the container image sets FLOWLINE_SERVE_HOST=0.0.0.0."""
    return os.environ.get(HOST_ENV) or DEFAULT_HOST


def workers_for(cpu_max: str | None, cpus: int) -> int:
    """Worker processes for a container: its CPU quota (cgroup v2 `cpu.max`) rounded up, at least 1;
    `cpus` (the CPUs this process may run on) when there is no quota or no cgroup file."""
    fields = (cpu_max or "").split()
    if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit() and int(fields[1]) > 0:
        return max(1, math.ceil(int(fields[0]) / int(fields[1])))
    return max(1, cpus)


def default_workers() -> int:
    """`flowline serve`'s default --workers: one per CPU the container may use."""
    cpu_max = CGROUP_CPU_MAX.read_text() if CGROUP_CPU_MAX.is_file() else None
    return workers_for(cpu_max, len(os.sched_getaffinity(0)))


def repository_token() -> str | None:
    """The bearer token that enables the model repository routes (load, unload); None leaves them off.

    Set it from a Kubernetes Secret (`valueFrom.secretKeyRef`), never on a command line.
    """
    token = os.environ.get(REPOSITORY_TOKEN_ENV) or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{REPOSITORY_TOKEN_ENV}: {len(token)} characters, give at least {MIN_TOKEN_LENGTH} "
                         "(e.g. `openssl rand -hex 32`)")
    if token is not None and len(set(token)) < MIN_TOKEN_SYMBOLS:  # 'aaaaaaaaaaaaaaaa' had loaded and unloaded
        raise ValueError(f"{REPOSITORY_TOKEN_ENV}: {len(set(token))} different characters, give at least "
                         f"{MIN_TOKEN_SYMBOLS}: a random one (e.g. `openssl rand -hex 32`), not a word or a pattern")
    return token


def named_package(argument: str) -> tuple[str, str]:
    """NAME=PATH, or PATH alone: then the name is the package's use case. PATH may be s3://bucket/prefix."""
    name, separator, path = argument.partition("=")
    if not separator:
        path = argument
        if is_s3(path):
            from flowline.package.remote import manifest_at

            return manifest_at(path)["name"], path
        name = read_manifest(path)["name"]
    return name, path

