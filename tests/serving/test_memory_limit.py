"""The container memory the memory alert compares, read from cgroup v2 or v1 at each scrape."""

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from flowline.inference_services import metrics

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

V2_STAT = "anon 500000000\nfile 300000000\nactive_file 100000000\ninactive_file 200000000\n"
V1_STAT = "cache 300000000\nrss 500000000\ninactive_file 9\ntotal_inactive_file 200000000\n"


def cgroup(root: Path, version: str, limit: str, usage: int) -> metrics.ContainerMemory:
    """A ContainerMemory reading a cgroup of `version` written under `root`."""
    v2, v1 = root / "v2", root / "v1"
    folder = v2 if version == "v2" else v1
    folder.mkdir(parents=True)
    names = ("memory.max", "memory.current") if version == "v2" else ("memory.limit_in_bytes", "memory.usage_in_bytes")
    (folder / names[0]).write_text(limit)
    (folder / names[1]).write_text(f"{usage}\n")
    (folder / "memory.stat").write_text(V2_STAT if version == "v2" else V1_STAT)
    return metrics.ContainerMemory(v2, v1)


@pytest.mark.parametrize(("version", "limit", "expected_limit"), [
    ("v2", "1073741824\n", 1073741824),
    ("v2", "max\n", 0),  # no limit
    ("v1", "4294967296\n", 4294967296),
    ("v1", "9223372036854771712\n", 0),  # v1's way of saying no limit
])
def test_the_limit_and_the_working_set_are_read_from_the_cgroup(tmp_path, version, limit, expected_limit):
    memory = cgroup(tmp_path, version, limit, 800_000_000)
    # The working set is the usage less the inactive file cache (v1: the hierarchy's total, not the group's own).
    assert memory.read() == (expected_limit, 600_000_000)
    registry = CollectorRegistry()
    registry.register(memory)
    assert registry.get_sample_value("flowline_memory_limit_bytes") == expected_limit
    assert registry.get_sample_value("flowline_memory_working_set_bytes") == 600_000_000


def test_each_scrape_reads_the_cgroup_again(tmp_path):
    memory = cgroup(tmp_path, "v2", "1073741824\n", 800_000_000)
    registry = CollectorRegistry()
    registry.register(memory)
    (tmp_path / "v2" / "memory.current").write_text("900000000\n")
    assert registry.get_sample_value("flowline_memory_working_set_bytes") == 700_000_000


def test_without_a_cgroup_nothing_is_exported(tmp_path):
    registry = CollectorRegistry()
    registry.register(metrics.ContainerMemory(tmp_path / "v2", tmp_path / "v1"))
    assert b"flowline_memory" not in generate_latest(registry)
