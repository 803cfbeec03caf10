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
                              "dirty": bool(git("status", "--porcelain", "--untracked-files=no")
                                            or git("status", "--porcelain", "--untracked-files=all", "--", "*.py"))}


def test_a_python_file_git_does_not_track_makes_the_checkout_dirty(monkeypatch, tmp_path):
    """An untracked module the pipeline imports changed nothing in the lineage: `dirty` read tracked files alone.
    Other untracked files (notes, data) do not count."""
    checkout = tmp_path / "checkout"
    (checkout / "flowline").mkdir(parents=True)
    (checkout / "flowline" / "code_version.py").write_text("")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(checkout), *args], check=True)
    monkeypatch.setattr(code_version_module, "__file__", str(checkout / "flowline" / "code_version.py"))
    clean = code_version_module._checkout_commit.__wrapped__
    assert not clean().endswith("-dirty")
    (checkout / "notes.txt").write_text("scratch")
    assert not clean().endswith("-dirty")
    (checkout / "flowline" / "helper.py").write_text("x = 1")
    assert clean().endswith("-dirty")


def test_the_environment_names_python_and_the_libraries_that_make_a_model():
    found = code_version_module.environment()
    assert found["python"].count(".") == 2
    assert found["libraries"]["xgboost-cpu"] == "3.0.5" and found["libraries"]["scikit-learn"] == "1.9.1"


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
