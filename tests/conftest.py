"""Shared fixtures: the data home, small use cases, and a tiny CSV maker."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Iterator

# Tests run in two workers on two cores: one OpenMP/BLAS thread each (set before numpy and
# XGBoost load; `make test` sets it too). Subprocesses (servers, kfp.local tasks) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from _pytest.nodeid import NodeId  # pytest 9's node id, for the xdist shim below
from installed_tools import installed_tool
from redis_server import redis_server_binary, running_redis
from s3_server import S3Server, running_s3_server

from flowline import storage
from flowline.datasets import DATA_HOME_ENV, REGISTRY
from flowline.use_case import UseCase
from flowline.use_case_loader import load_use_case

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tests read the datasets beside the checkout unless the data home is set explicitly.
os.environ.setdefault(DATA_HOME_ENV, str(SHARED_DATA))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each `xdist_group` on one worker. pytest-xdist 3.8 tags a grouped item by rewriting
    `item._nodeid`, which pytest 9 no longer reads (it keeps the id in `_id`), so `--dist loadgroup`
    split every group: both workers built the image and ran churn in it. Tag the id pytest reads."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                         for mark in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


@pytest.fixture(autouse=True)
def runs_dir_elsewhere(monkeypatch, tmp_path_factory) -> None:
    """No test writes the checkout's ./runs, where a user's runs and audit trail live: a command left to its default
    runs folder ($FLOWLINE_RUNS_DIR, else ./runs) gets a fresh temporary one."""
    monkeypatch.setenv("FLOWLINE_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="session")
def data_home() -> Path:
    """The data home with every registered dataset; skips locally, fails under CI=true."""
    home = Path(os.environ[DATA_HOME_ENV])
    missing = [d.filename for d in REGISTRY.values() if not (home / d.filename).is_file()]
    if missing:
        message = f"data home {home} lacks {missing}; set {DATA_HOME_ENV} (see DESIGN.md, 'Data')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return home


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium (Debian's chromium package), which renders the HTML reports."""
    return installed_tool("chromium")


@pytest.fixture(scope="session")
def prometheus() -> str:
    """The Prometheus server binary (Debian's prometheus package; `make test` sets FLOWLINE_PROMETHEUS)."""
    return installed_tool("prometheus", "FLOWLINE_PROMETHEUS")


CEPH_ENV = "FLOWLINE_CEPH"  # where tests/tools/fetch-ceph.sh unpacked Ceph; `make tools` sets it up


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """A real S3 server (Ceph's RADOS Gateway) on loopback for the session; see ../shared/S3-SERVER.md.

    Skips where Ceph is not unpacked, except under CI=true, where that is a failure.
    Tests that use it belong to the xdist group "s3", so one worker starts it once.
    """
    root = Path(os.environ.get(CEPH_ENV) or ROOT / "build" / "tools" / "ceph")
    if not (root / "usr" / "bin" / "radosgw").is_file():
        message = f"Ceph is not unpacked in {root}; `make tools` does it (tests/tools/fetch-ceph.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with running_s3_server(root, tmp_path_factory.mktemp("ceph")) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a loopback port for the session (tests/redis_server.py); its URL."""
    with running_redis(redis_server_binary(), tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test."""
    import redis

    with redis.Redis.from_url(redis_server) as client:
        client.flushdb()
    return redis_server


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch) -> str:
    """A fresh bucket, with the environment pointing flowline's object storage at the server."""
    for name, value in s3_server.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(storage.SECURE_ENV, raising=False)
    bucket = f"test-{secrets.token_hex(6)}"
    storage.s3_client().make_bucket(bucket)
    return bucket


@pytest.fixture(scope="session")
def churn() -> UseCase:
    return load_use_case("churn")


@pytest.fixture
def toy_use_case() -> UseCase:
    """A small binary use case over the columns written by `write_csv`."""
    return UseCase.model_validate({
        "name": "toy",
        "task": "binary",
        "data": {"path": "unused.csv"},
        "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]},
        "id_columns": ["id"],
        "columns": {
            "id": {"type": "string"},
            "age": {"type": "integer", "min": 0, "max": 120},
            "income": {"type": "number", "nullable": True},
            "plan": {"type": "category", "allowed": ["basic", "pro"]},
        },
        "max_bad_fraction": 0.5,
        "costs": {"false_negative": 5, "false_positive": 1},
        "features": {"search_min_rows": 0},  # the feature search runs on these few rows, so the tests exercise it
    })


@pytest.fixture
def write_csv(tmp_path: Path):
    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
