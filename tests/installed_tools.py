"""Finding the real tools the tests drive (promtool, kubectl, chromium): `make tools` installs them."""

from __future__ import annotations

import os
import shutil

import pytest


def installed_tool(name: str, env: str | None = None) -> str:
    """A tool's path from `env` or PATH; skips when missing, fails under CI=true."""
    path = os.environ.get(env) if env else None
    path = path or shutil.which(name)
    if path and os.access(path, os.X_OK):
        return path
    where = f"${env} or PATH" if env else "PATH"
    message = f"{name} not found in {where}; `make tools` installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
