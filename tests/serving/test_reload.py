"""Hot reload under a stream of requests, and refusal of packages that fail verification."""

import json
import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from flowline import audit
from flowline.package.format import verify
from flowline.pipelines.cli import main
from flowline.datasets import sha256_of_file
from flowline.inference_services.local_server import running_server
from serving_helpers import AUTHORIZED, records_of, repository_env

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


def point(link: Path, target: Path) -> None:
    """Swap a symlink atomically, as a deployment would."""
    staging = link.with_name(link.name + ".new")
    staging.symlink_to(target)
    os.replace(staging, link)


def corrupted_copy(package: Path, destination: Path) -> Path:
    shutil.copytree(package, destination)
    model = destination / "model" / "model.json"
    model.write_text(model.read_text().replace('"bias"', '"bias" ', 1))
    return destination


def test_reload_swaps_versions_without_a_failed_request_and_refuses_a_corrupt_package(
    churn_package, churn_package_b, churn_test_rows, tmp_path: Path
):
    version_a, version_b = verify(churn_package)["version"], verify(churn_package_b)["version"]
    assert version_a != version_b
    current = tmp_path / "current"
    current.symlink_to(churn_package)
    body = {"instances": records_of(churn_test_rows.head(1))}
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    with running_server([f"churn={current}"], log_path=str(tmp_path / "server.log"), env=repository_env()) as url:
        def stream() -> None:
            with httpx.Client(base_url=url, timeout=10) as client:
                while not stop.is_set():
                    response = client.post("/v1/models/churn:predict", json=body)
                    answers.append((response.status_code, response.json().get("model_version", response.text)))

        worker = threading.Thread(target=stream)
        worker.start()
        try:
            while len(answers) < 50:
                stop.wait(0.05)
            point(current, churn_package_b)
            reloaded = httpx.post(f"{url}/v2/repository/models/churn/load", headers=AUTHORIZED, timeout=30)
            assert reloaded.status_code == 200 and reloaded.json()["version"] == version_b
            seen_after_b = len(answers)
            while len(answers) < seen_after_b + 50:
                stop.wait(0.05)

            point(current, corrupted_copy(churn_package_b, tmp_path / "corrupt"))
            refused = httpx.post(f"{url}/v2/repository/models/churn/load", headers=AUTHORIZED, timeout=30)
            assert refused.status_code == 409
            assert "model.json" in refused.json()["error"] and version_b in refused.json()["error"]
            seen_after_refusal = len(answers)
            while len(answers) < seen_after_refusal + 50:
                stop.wait(0.05)
            exported = httpx.get(f"{url}/metrics").text
        finally:
            stop.set()
            worker.join()

    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    versions = [version for _, version in answers]
    assert versions[0] == version_a and version_b in versions
    assert set(versions[versions.index(version_b):]) == {version_b}  # no going back, refused package ignored
    assert f'model_version="{version_b}",task="binary"' in exported and f'model_version="{version_a}",task' not in exported
    assert 'flowline_model_reloads_total{model_name="churn",result="loaded"} 1.0' in exported
    assert 'flowline_model_reloads_total{model_name="churn",result="refused"} 1.0' in exported


def test_a_package_of_another_use_case_is_refused_and_the_served_one_keeps_answering(
        churn_package, card_package, churn_test_rows, tmp_path: Path):
    """Signed and intact, but a fraud model where churn is served: every churn request would be a 400."""
    current = tmp_path / "current"
    current.symlink_to(churn_package)
    body = {"instances": records_of(churn_test_rows.head(1))}
    with running_server([f"churn={current}"], log_path=str(tmp_path / "server.log"), env=repository_env()) as url:
        point(current, card_package)
        refused = httpx.post(f"{url}/v2/repository/models/churn/load", headers=AUTHORIZED, timeout=30)
        assert refused.status_code == 409
        assert "holds a model of use case 'card-fraud'; churn serves 'churn'" in refused.json()["error"]
        answer = httpx.post(f"{url}/v1/models/churn:predict", json=body, timeout=10)
        assert answer.status_code == 200 and answer.json()["model_version"] == verify(churn_package)["version"]


def test_a_corrupt_package_is_refused_at_startup(churn_package, tmp_path: Path):
    corrupt = corrupted_copy(churn_package, tmp_path / "corrupt")
    with pytest.raises(RuntimeError, match=r"model.json has sha256 .* the manifest says"):
        with running_server([str(corrupt)], log_path=str(tmp_path / "server.log")):
            pass


def recorded_run(runs: Path, package: Path, run: str, decision: str = "promote") -> Path:
    """A copy of `package` in its own run folder, recorded in the runs folder's audit log as a local run
    records it (local_run.record_run's package and gate_decision records), under a version of its own as a
    run on new data would have."""
    from flowline.package.format import CARD_JSON, write_manifest

    copy = shutil.copytree(package, runs / run / "package")
    card = json.loads((copy / CARD_JSON).read_text())
    (copy / CARD_JSON).write_text(json.dumps({**card, "run": {"name": run}}))
    write_manifest(copy, "churn")  # a package of its own: the registry checks the version recorded against it
    version = {"use_case": "churn", "package_version": verify(copy)["version"]}
    audit.append(runs / audit.AUDIT_FILE, "package", {**version, "package": str(copy)})
    audit.append(runs / audit.AUDIT_FILE, "gate_decision", {**version, "decision": decision})
    return copy


def test_serve_finds_the_newest_package_of_a_use_case(churn_package, churn_package_b, tmp_path: Path):
    from flowline.registry import latest_package

    runs = tmp_path / "runs"
    recorded_run(runs, churn_package_b, "churn-1")
    newest = recorded_run(runs, churn_package, "churn-2")
    assert latest_package(runs, "churn") == newest
    assert verify(latest_package(runs, "churn"))["version"] == verify(newest)["version"]
    older = verify(runs / "churn-1" / "package")["version"]
    shutil.rmtree(newest)  # a run folder removed by hand: its package is no longer offered
    assert verify(latest_package(runs, "churn"))["version"] == older
    with pytest.raises(FileNotFoundError, match="run `flowline run fraud` first"):
        latest_package(runs, "fraud")


def test_the_champion_of_a_local_run_is_the_newest_promoted_package(churn_package, tmp_path: Path):
    from flowline.registry import newest_package

    runs = tmp_path / "runs"
    for run, decision in (("a", "promote"), ("b", "promote"), ("c", "keep")):
        recorded_run(runs, churn_package, run, decision)
    assert newest_package(runs, "churn").parts[-2] == "c"  # what `flowline serve churn` serves
    assert newest_package(runs, "churn", promoted_only=True).parts[-2] == "b"  # what a new run must beat
    assert newest_package(runs, "fraud", promoted_only=True) is None


def test_a_use_case_whose_newest_package_was_not_promoted_is_served_with_a_warning_naming_the_champion(
        churn_package, tmp_path: Path):
    """`flowline score churn` scored silently with a package its own run had rejected."""
    from flowline.registry import NotChampionWarning, resolve_package

    runs = tmp_path / "runs"
    champion = recorded_run(runs, churn_package, "a", "promote")
    assert resolve_package("churn", runs) == str(champion)  # the champion: no warning
    newest = recorded_run(runs, churn_package, "b", "keep")
    kept, promoted = verify(newest)["version"], verify(champion)["version"]
    with pytest.warns(NotChampionWarning, match=f"newest package, {kept}, was not promoted over the champion; "
                                                f"the champion is {promoted}: give its version to use it"):
        assert resolve_package("churn", runs) == str(newest)
    with pytest.warns(NotChampionWarning, match=f"use case 'churn': its newest package, {kept}"):
        main(["score", "churn", "--runs-dir", str(runs), "--input", str(tmp_path / "none.csv"),
              "--output", str(tmp_path / "out.parquet")])


def test_flowline_serve_names_the_model_after_the_use_case(churn_package, tmp_path: Path):
    """`flowline serve PACKAGE` serves the package's use case by its name; NAME=PACKAGE names it."""
    from flowline.inference_services.options import named_package

    assert named_package(str(churn_package)) == ("churn", str(churn_package))
    assert named_package(f"champion={churn_package}") == ("champion", str(churn_package))


def test_the_server_binds_loopback_unless_told_otherwise(churn_package, tmp_path: Path, monkeypatch):
    from flowline.inference_services.local_server import SERVE_COMMAND, free_port, running_process
    from flowline.inference_services.options import HOST_ENV, default_host

    monkeypatch.delenv(HOST_ENV, raising=False)
    assert default_host() == "127.0.0.1"
    monkeypatch.setenv(HOST_ENV, "0.0.0.0")
    assert default_host() == "0.0.0.0"  # what the container image sets

    monkeypatch.delenv(HOST_ENV)
    port, log = free_port(), tmp_path / "server.log"
    command = [*SERVE_COMMAND, str(churn_package), "--port", str(port), "--workers", "1"]  # one process binds
    with running_process(command, f"http://127.0.0.1:{port}/v2/health/ready", str(log)):
        pass
    assert f"flowline: serving on 127.0.0.1:{port}" in log.read_text()


def forged_copy(package: Path, destination: Path, recompute_version: bool) -> Path:
    """The issue's forgery: model.json's bias raised so every row scores 1.0, its hash updated in the manifest,
    and (optionally) the version recomputed from the new content; the signature, if any, left as it was."""
    from flowline.package.signing import content_version

    shutil.copytree(package, destination)
    model = destination / "model" / "model.json"
    model.write_text(json.dumps({**json.loads(model.read_text()), "bias": 40.0}))
    manifest = json.loads((destination / "manifest.json").read_text())
    manifest["files"]["model/model.json"] = sha256_of_file(model)
    if recompute_version:
        manifest["version"] = content_version({k: manifest[k] for k in ("format", "name", "files")})
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def test_a_keyed_server_refuses_forged_and_unsigned_reloads_and_keeps_serving(
    churn_package, churn_test_rows, tmp_path: Path, monkeypatch
):
    from flowline.package.format import write_manifest
    from flowline.package.signing import KEY_ENV

    monkeypatch.setenv(KEY_ENV, "the-signing-key")  # the server inherits it
    signed = Path(shutil.copytree(churn_package, tmp_path / "signed"))
    version = write_manifest(signed, "churn")["version"]
    unsigned = Path(shutil.copytree(churn_package, tmp_path / "unsigned"))
    monkeypatch.setenv(KEY_ENV, "")
    write_manifest(unsigned, "churn")  # a copy re-listed by someone without the key
    monkeypatch.setenv(KEY_ENV, "the-signing-key")
    forgeries = {
        "states version": forged_copy(signed, tmp_path / "forged", recompute_version=False),
        "signature does not match": forged_copy(signed, tmp_path / "forged-version", recompute_version=True),
        "the manifest is unsigned": unsigned,
    }
    current = tmp_path / "current"
    current.symlink_to(signed)
    body = {"instances": records_of(churn_test_rows.head(5))}
    with running_server([f"churn={current}"], log_path=str(tmp_path / "server.log"), env=repository_env()) as url:
        before = httpx.post(f"{url}/v1/models/churn:predict", json=body).json()
        assert before["model_version"] == version
        for reason, forged in forgeries.items():
            point(current, forged)
            refused = httpx.post(f"{url}/v2/repository/models/churn/load", headers=AUTHORIZED, timeout=30)
            assert refused.status_code == 409 and reason in refused.json()["error"], refused.text
            assert f"still serving version {version}" in refused.json()["error"]
            after = httpx.post(f"{url}/v1/models/churn:predict", json=body)
            assert after.status_code == 200 and after.json() == {**before, "id": after.json()["id"]}
    # What the refused forgery would have served: probability 1.0 for every row.
    from flowline.features.feature_set import FeatureSet
    from flowline.models.ensemble import Ensemble

    x = FeatureSet.load(signed / "feature_set.json").transform(churn_test_rows.head(5))
    assert (Ensemble.load(forgeries["states version"] / "model").predict(x) > 0.999).all()
    assert not (Ensemble.load(signed / "model").predict(x) > 0.999).all()


def test_a_keyed_server_does_not_start_on_an_unsigned_package(churn_package, tmp_path: Path, monkeypatch):
    from flowline.package.signing import KEY_ENV

    monkeypatch.setenv(KEY_ENV, "the-signing-key")
    with pytest.raises(RuntimeError, match=r"the manifest is unsigned and a signing key is set \(\$FLOWLINE_SIGNING"):
        with running_server([str(churn_package)], log_path=str(tmp_path / "server.log")):
            pass


def test_a_reload_to_an_older_package_is_logged_as_one(churn_package, churn_package_b, caplog):
    """A rollback, or a replay of an old signed package: both are loaded (rolling back is a fix), and said."""
    import logging

    from flowline.inference_services.model import FlowlineModel

    model = FlowlineModel("churn", churn_package_b)
    model.load()
    newer = model.package.version
    with caplog.at_level(logging.WARNING, logger="flowline.serving"):
        older = model.reload(churn_package)
    assert older == verify(churn_package)["version"] != newer
    (said,) = [record.getMessage() for record in caplog.records if "an older package" in record.getMessage()]
    assert said.startswith(f"churn: version {older}, built ") and f", replaces {newer}, built later (" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flowline.serving"):
        model.reload(churn_package_b)  # forward again: nothing to say
    assert not [record for record in caplog.records if "an older package" in record.getMessage()]
