"""Fixtures for the monitoring tests: the real promtool and kubectl binaries."""

from __future__ import annotations

import pytest
from installed_tools import installed_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool (Debian's prometheus package; `make test` sets FLOWLINE_PROMTOOL)."""
    return installed_tool("promtool", "FLOWLINE_PROMTOOL")


@pytest.fixture(scope="session")
def kubectl() -> str:
    """kubectl, whose `kustomize` subcommand renders the manifests."""
    return installed_tool("kubectl")
