"""The flowline image itself: what it holds, and the faults a pod's settings exposed in it."""

import pytest

from flowline import __version__
from pods import podman, record

pytestmark = pytest.mark.xdist_group("containers")

# A pipeline or server pod: uid 1000, read-only root, only /tmp writable (see kustomize/ and katib_experiments/).
POD = ["--user", "1000", "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777",
       "--cap-drop", "all", "--security-opt", "no-new-privileges"]
# What the drift monitor and the reports import first: alibi-detect (and numba under it), matplotlib.
IMPORTS = "import alibi_detect.cd, matplotlib.pyplot as plt; plt.figure(); print('imported')"


def test_the_image_runs_flowline_at_this_version_as_uid_1000(flowline_image):
    shown = podman("run", "--rm", *POD, flowline_image, "sh", "-c", "id -u && flowline --version").stdout.split()
    assert shown[0] == "1000" and __version__ in shown
    size = int(podman("image", "inspect", flowline_image, "--format", "{{.Size}}").stdout)
    record("image_size_bytes", size)


def test_every_cache_goes_to_tmp_under_a_read_only_root(flowline_image):
    ran = podman("run", "--rm", *POD, flowline_image, "python", "-c", IMPORTS, check=False)
    assert ran.returncode == 0 and ran.stdout.strip() == "imported", ran.stderr[-2000:]
    assert "Matplotlib created a temporary cache directory" not in ran.stderr
    # flowline's own: the packages `flowline serve s3://...` downloads, and a data home.
    ours = ("from flowline.datasets import data_home; from flowline.package.remote import cache_root\n"
            "for folder in (cache_root(), data_home()): folder.mkdir(parents=True); print(folder)")
    ran = podman("run", "--rm", *POD, flowline_image, "python", "-c", ours, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["/tmp/cache/flowline/packages", "/tmp/cache/flowline/data"]


def test_without_the_image_cache_settings_numba_kills_the_drift_monitor_at_import(flowline_image):
    """The fault the containers found: numba (under alibi-detect) caches compiled functions beside its
    source or in the user's cache, both read-only in a pod. The image points NUMBA_CACHE_DIR and
    XDG_CACHE_HOME at /tmp; cleared, the import dies as the drift monitor did."""
    cleared = ["--env", "NUMBA_CACHE_DIR=", "--env", "XDG_CACHE_HOME="]
    ran = podman("run", "--rm", *POD, *cleared, flowline_image, "python", "-c", IMPORTS, check=False)
    assert ran.returncode != 0
    assert "cannot cache function" in ran.stderr and "no locator available" in ran.stderr
