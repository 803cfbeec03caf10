"""Which code built something: flowline's version and, where it is known, the git commit.

The commit comes from $FLOWLINE_COMMIT, which the image is built with (`make image` passes the checkout's
commit, with DIRTY after it when tracked files differed from it or a Python file was not tracked), else from
the git checkout flowline is imported from. flowline installed from a wheel, with neither (or without git), has
no known commit (None): its version alone names the code, and `__version__` does not change with every commit.
`environment()` names Python and the libraries that make a model, which the lineage records beside the code.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from flowline import __version__

COMMIT_ENV = "FLOWLINE_COMMIT"
DIRTY = "-dirty"
# The libraries whose versions decide what a model is and how it is trained and explained.
LIBRARIES = ("numpy", "pandas", "scikit-learn", "xgboost-cpu", "lightgbm", "catboost", "optuna", "shap",
             "alibi-detect", "fairlearn", "kfp", "kserve")


def code_version() -> dict:
    """{"flowline": version, "commit": git commit or None, "dirty": whether tracked files differed from it
    (None when the commit is unknown)}."""
    commit = os.environ.get(COMMIT_ENV) or _checkout_commit()
    if not commit:
        return {"flowline": __version__, "commit": None, "dirty": None}
    return {"flowline": __version__, "commit": commit.removesuffix(DIRTY), "dirty": commit.endswith(DIRTY)}


@functools.cache
def environment() -> dict:
    """{"python": its version, "libraries": {name: installed version, or None when absent}} of LIBRARIES."""
    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "libraries": {name: installed(name) for name in LIBRARIES}}


@functools.cache
def _checkout_commit() -> str | None:
    """HEAD of the git checkout holding this file, with DIRTY when a tracked file differs or a Python file is not
    tracked (it may be imported); None outside one, or without git."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():  # a folder in a clone, a file in a worktree
        return None
    try:
        head = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no") or \
            _git(root, "status", "--porcelain", "--untracked-files=all", "--", "*.py")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (DIRTY if changed else "")


def _git(root: Path, *args: str) -> str:
    """A read-only git command in `root`, trusted even where another user owns the checkout (git refuses a
    "dubious ownership" otherwise, as for a clone mounted into a container)."""
    return subprocess.run(["git", "-c", f"safe.directory={root}", "-C", str(root), *args], capture_output=True,
                          text=True, timeout=30, check=True).stdout.strip()
