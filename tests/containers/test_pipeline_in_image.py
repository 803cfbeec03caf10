"""The churn pipeline with every compiled task run in the flowline image, as pipeline pods run it."""

import json
from pathlib import Path

import pytest

from flowline.code_version import code_version
from flowline.package.format import LINEAGE_FILE, verify
from pipeline_steps import SHOWN, STEPS
from pods import record

pytestmark = [pytest.mark.xdist_group("containers"), pytest.mark.pipeline]


def test_every_step_runs_in_the_image_and_gives_the_in_process_metrics(churn_in_image, churn_in_process):
    # Every task ran, in a container, and the package it made verifies.
    assert set(churn_in_image["step_seconds"]) == set(SHOWN)
    manifest = verify(churn_in_image["package"])
    assert manifest["version"] == churn_in_image["package_version"]
    # Its lineage names the commit the image was built from: this checkout's, as the in-process run's does.
    in_image, in_process = (json.loads((Path(run["package"]) / LINEAGE_FILE).read_text())["code"]
                            for run in (churn_in_image, churn_in_process))
    assert in_image == in_process == code_version() and in_image["commit"]
    # It read the data from the S3 server, the same bytes as the in-process run.
    assert churn_in_image["dataset_sha256"] == churn_in_process["dataset_sha256"]
    assert churn_in_process["printed"] == ""  # run quietly (quiet=True): a notebook's loop prints nothing
    assert churn_in_image["rows"] == churn_in_process["rows"] == {"rows_in": 7043, "rows_kept": 7043,
                                                                  "rows_quarantined": 0}
    # Same seeds, same code, same pins: the same test metrics to 4 decimal places.
    assert churn_in_image["metrics"].keys() == churn_in_process["metrics"].keys()
    for name, value in churn_in_process["metrics"].items():
        assert round(churn_in_image["metrics"][name], 4) == round(value, 4), name
    assert churn_in_image["model"]["members"] == churn_in_process["model"]["members"]
    record("step_seconds", {"in_image": churn_in_image["step_seconds"],
                            "in_process": churn_in_process["step_seconds"],
                            "wall_seconds": {"in_image": churn_in_image["wall_seconds"],
                                             "in_process": churn_in_process["wall_seconds"]}})


def test_the_steps_ran_as_uid_1000_under_a_read_only_root(churn_in_image, flowline_image):
    containers = churn_in_image["containers"]
    assert len(containers) == len(STEPS)
    for container in containers:
        assert container["image"] == flowline_image and container["user"] == "1000"
        assert container["read_only"] and list(container["tmpfs"]) == ["/tmp"]
        assert {capability.upper().removeprefix("CAP_") for capability in container["cap_drop"]} >= {"CHOWN", "SETUID"}
    # What the steps wrote belongs to the pod's user, not to root.
    package = Path(churn_in_image["package"])
    assert {path.stat().st_uid for path in package.rglob("*") if path.is_file()} == {1000}
