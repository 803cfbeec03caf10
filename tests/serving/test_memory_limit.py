"""The container memory limit the memory alert compares with, read from cgroup v2 or v1."""

import pytest
from prometheus_client import REGISTRY

from flowline.inference_services import metrics

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


@pytest.mark.parametrize(("version", "content", "expected"), [
    ("v2", "1073741824\n", 1073741824),
    ("v2", "max\n", 0),  # no limit
    ("v1", "4294967296\n", 4294967296),
    ("v1", "9223372036854771712\n", 0),  # v1's way of saying no limit
])
def test_the_limit_is_read_from_the_cgroup(tmp_path, monkeypatch, version, content, expected):
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    (v2 if version == "v2" else v1).write_text(content)
    monkeypatch.setattr(metrics, "CGROUP_MEMORY_LIMITS", (v2, v1))
    metrics.publish_memory_limit()
    assert REGISTRY.get_sample_value("flowline_memory_limit_bytes") == expected
