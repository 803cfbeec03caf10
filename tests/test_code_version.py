"""The code a package names in its lineage: the image's commit, else this checkout's, else none."""

import subprocess
from pathlib import Path

import flowline.code_version as code_version_module
from flowline import __version__
from flowline.code_version import COMMIT_ENV, code_version

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_a_checkout_names_its_head_and_whether_a_tracked_file_differs(monkeypatch):
    monkeypatch.delenv(COMMIT_ENV, raising=False)
    assert code_version() == {"flowline": __version__, "commit": git("rev-parse", "HEAD"),
                              "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def test_the_image_names_the_commit_it_was_built_from(monkeypatch):
    monkeypatch.setenv(COMMIT_ENV, "0123abcd-dirty")  # `make image` from a checkout with a changed file
    assert code_version() == {"flowline": __version__, "commit": "0123abcd", "dirty": True}
    monkeypatch.setenv(COMMIT_ENV, "0123abcd")
    assert code_version()["dirty"] is False


def test_installed_without_a_checkout_or_a_commit_names_the_version_alone(monkeypatch):
    monkeypatch.delenv(COMMIT_ENV, raising=False)
    monkeypatch.setattr(code_version_module, "_checkout_commit", lambda: None)
    assert code_version() == {"flowline": __version__, "commit": None, "dirty": None}


def test_a_checkout_another_user_owns_still_names_its_commit(monkeypatch):
    """git refuses a repository of "dubious ownership" (a clone mounted into a container, a checkout another user
    owns), and the lineage recorded no commit. GIT_TEST_ASSUME_DIFFERENT_OWNER is git's own way to act so."""
    head = git("rev-parse", "HEAD")
    monkeypatch.setenv("GIT_TEST_ASSUME_DIFFERENT_OWNER", "1")
    assert code_version_module._checkout_commit.__wrapped__().removesuffix("-dirty") == head
