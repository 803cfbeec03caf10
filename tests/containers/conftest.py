"""Fixtures: the flowline image, built once per session with `make image`, and the churn pipeline run in it.

Every container test is in the xdist group "containers", so one worker builds the image and runs
the containers while the other goes on with the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from flowline import storage
from flowline.datasets import dataset_path
from kfp_in_image import docker_api, folders_pods_can_write, pod_settings
from pods import build_image, record

@pytest.fixture(scope="session")
def flowline_image() -> str:
    image, seconds = build_image()
    record("make_image_seconds", round(seconds, 1))
    return image


@pytest.fixture(scope="session")
def telco_in_s3(data_home, s3_server) -> str:
    """The Telco file in a bucket of the S3 server, where a cluster run reads its data from."""
    os.environ.update(s3_server.environment())
    client = storage.s3_client()
    client.make_bucket("datasets")
    source = dataset_path("telco_customer_churn")
    client.fput_object("datasets", "telco/telco_customer_churn.csv", str(source))
    return "s3://datasets/telco/telco_customer_churn.csv"


@pytest.fixture(scope="session")
def churn_in_image(flowline_image, churn, telco_in_s3, s3_server, tmp_path_factory) -> dict:
    """churn, one trial per family, every step a container of the image reading its data from S3: the run's
    summary, and under "containers" each task's container settings."""
    from kfp import local

    from flowline.pipelines.local_run import run_local

    workdir = tmp_path_factory.mktemp("in-image")
    (workdir / "empty").mkdir()
    environment = {**s3_server.environment(), "OMP_NUM_THREADS": "1"}
    with (docker_api(workdir) as docker_host, pod_settings(environment, workdir / "empty") as containers,
          folders_pods_can_write()):
        os.environ["DOCKER_HOST"] = docker_host
        try:
            summary = run_local(churn, runs_dir=workdir / "runs", trials=1, source=telco_in_s3, champion="",
                                runner=local.DockerRunner())
        finally:
            del os.environ["DOCKER_HOST"]
    return {**summary, "containers": containers}


@pytest.fixture(scope="session")
def churn_in_process(churn, telco_in_s3, tmp_path_factory) -> dict:
    """The same run in this Python environment (kfp.local's SubprocessRunner), quiet, with what it printed."""
    import contextlib
    import io

    from flowline.pipelines.local_run import run_local

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = run_local(churn, runs_dir=tmp_path_factory.mktemp("in-process") / "runs", trials=1,
                            source=telco_in_s3, champion="", quiet=True)
    return {**summary, "printed": printed.getvalue()}


@pytest.fixture(scope="session")
def package_in_image(churn_in_image, tmp_path_factory) -> Path:
    """The package the in-image run made, copied where a read-only mount can take it."""
    target = tmp_path_factory.mktemp("mnt") / "models"
    shutil.copytree(churn_in_image["package"], target)
    return target
