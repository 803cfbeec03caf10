import shutil
from pathlib import Path

import pytest

from flowline.datasets import DATA_HOME_ENV, REGISTRY, DatasetError, data_home, dataset_path
from flowline.package.remote import CACHE_ENV, cache_root


def test_registry_matches_the_shared_checksums(data_home: Path):
    listed = dict(line.split()[::-1] for line in (data_home / "SHA256SUMS").read_text().splitlines())
    assert {d.filename: d.sha256 for d in REGISTRY.values()} == listed


def test_every_registered_dataset_verifies(data_home: Path):
    for name, entry in REGISTRY.items():
        assert dataset_path(name) == data_home / entry.filename


def test_missing_file_names_the_file_the_hash_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    entry = REGISTRY["telco_customer_churn"]
    with pytest.raises(DatasetError) as caught:
        dataset_path("telco_customer_churn")
    message = str(caught.value)
    assert str(tmp_path / entry.filename) in message
    assert entry.sha256 in message
    assert entry.source in message and DATA_HOME_ENV in message


def test_altered_file_is_refused_with_both_hashes(data_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    entry = REGISTRY["cdnow_sample"]
    altered = tmp_path / entry.filename
    shutil.copyfile(data_home / entry.filename, altered)
    altered.write_bytes(altered.read_bytes() + b"1 1 19970101 1 9.99\n")
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    with pytest.raises(DatasetError, match=f"expected {entry.sha256}") as caught:
        dataset_path("cdnow_sample")
    assert "altered" in str(caught.value) and str(altered) in str(caught.value)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetError, match="telco_customer_churn"):
        dataset_path("no_such_data")


def test_data_home_and_the_package_cache_default_to_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.delenv(DATA_HOME_ENV)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data_home() == Path("~/.cache/flowline/data").expanduser()
    assert cache_root() == Path("~/.cache/flowline/packages").expanduser()
    # The image's pods can write only /tmp: it sets XDG_CACHE_HOME there, and both follow it.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert (data_home(), cache_root()) == (tmp_path / "flowline" / "data", tmp_path / "flowline" / "packages")
