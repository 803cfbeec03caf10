"""Object storage against a real S3 server on loopback (Ceph's RADOS Gateway): files, datasets, model packages."""

import base64
import json
from pathlib import Path

import pytest
from stand_in_api import NOT_FOUND, StandInApiServer, cluster_with

from flowline import storage
from flowline.contract import read_table
from flowline.package.format import MANIFEST_FILE, PackageError, verify, write_manifest
from flowline.package.remote import download_package, upload_package
from flowline.pipelines.cli import main

pytestmark = pytest.mark.xdist_group("s3")  # one worker starts the gateway once
MIB = 1024 * 1024


def fake_package(folder: Path, big_file_mib: int = 0) -> Path:
    """A folder that verifies as a package (what transfers must keep intact), optionally with a big file."""
    files = {"model/model.json": b'{"learner": {}}', "use_case.json": b'{"name": "toy"}', "feature_set.json": b"{}",
             "evaluation.json": b"{}", "drift/detector/config.toml": b"name = 'KSDrift'\n"}
    if big_file_mib:
        files["model/weights.bin"] = bytes(range(256)) * (big_file_mib * MIB // 256)
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    write_manifest(folder, "toy")
    verify(folder)
    return folder


def test_a_file_round_trips_and_a_big_one_goes_up_in_parts(s3_bucket, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"flowline" * (12 * MIB // 8))
    etag = storage.upload_file(big, f"s3://{s3_bucket}/data/big.bin")
    assert etag.endswith("-3")  # an S3 multipart ETag: 12 MiB in three 5 MiB parts
    small = tmp_path / "small.csv"
    small.write_text("id,label\n1,yes\n")
    assert "-" not in storage.upload_file(small, f"s3://{s3_bucket}/data/small.csv")
    back = storage.download_file(f"s3://{s3_bucket}/data/big.bin", tmp_path / "back.bin")
    assert back.read_bytes() == big.read_bytes()


def test_a_dataset_in_object_storage_is_read_by_ingest_byte_for_byte(s3_bucket, tmp_path, write_csv):
    local = write_csv("id,age,income,plan,label\n1,30,5.5,pro,yes\n2,41,,basic,no\n")
    assert main(["upload", str(local), f"s3://{s3_bucket}/datasets/toy.csv"]) == 0
    remote, here = read_table(f"s3://{s3_bucket}/datasets/toy.csv"), read_table(str(local))
    assert remote.sha256 == here.sha256 and remote.frame.equals(here.frame)


def test_missing_objects_and_wrong_credentials_are_clear_errors(s3_bucket, tmp_path, monkeypatch):
    with pytest.raises(storage.StorageError, match=f"s3://{s3_bucket}/nothing/here.csv does not exist"):
        storage.read_bytes(f"s3://{s3_bucket}/nothing/here.csv")
    with pytest.raises(storage.StorageError, match="s3://no-such-bucket-here/x does not exist"):
        storage.read_bytes("s3://no-such-bucket-here/x")
    monkeypatch.setenv(storage.SECRET_KEY_ENV, "not-the-secret")
    with pytest.raises(storage.StorageError, match="refused the credentials .*SignatureDoesNotMatch.*check "
                                                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        storage.read_bytes(f"s3://{s3_bucket}/anything")
    monkeypatch.setenv(storage.ACCESS_KEY_ENV, "NOSUCHUSER")
    with pytest.raises(storage.StorageError, match="refused the credentials .*InvalidAccessKeyId"):
        storage.upload_file(__file__, f"s3://{s3_bucket}/x.py")


def test_a_package_round_trips_verified_and_a_corrupted_object_is_refused(s3_bucket, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLOWLINE_PACKAGE_CACHE", str(tmp_path / "cli-cache"))
    package = fake_package(tmp_path / "package", big_file_mib=6)
    uri = f"s3://{s3_bucket}/models/toy/abc123"
    assert main(["upload", str(package), uri]) == 0
    assert "verified" in capsys.readouterr().out
    cache = tmp_path / "cache"
    copy = download_package(uri, cache)
    assert verify(copy)["files"] == verify(package)["files"]
    assert download_package(uri, cache) == copy  # a verified copy is reused
    assert main(["download", uri, str(tmp_path / "downloaded"), "--package"]) == 0
    assert verify(tmp_path / "downloaded")["version"] == verify(package)["version"]
    assert main(["download", f"s3://{s3_bucket}/models/none/manifest.json", str(tmp_path / "none.json")]) == 1
    assert "does not exist (NoSuchKey)" in capsys.readouterr().err
    assert main(["upload", str(package), "/tmp/not-s3"]) == 1
    assert "is not an s3:// URI" in capsys.readouterr().err

    # Someone overwrites the model in the bucket: the download is refused, and nothing is kept.
    client = storage.s3_client()
    evil = tmp_path / "evil.json"
    evil.write_text('{"learner": {"evil": 1}}')
    client.fput_object(s3_bucket, "models/toy/abc123/model/model.json", str(evil))
    fresh = tmp_path / "fresh-cache"
    with pytest.raises(PackageError, match=f"{uri}: .*model/model.json has sha256 .* the manifest says"):
        download_package(uri, fresh)
    assert [p.name for p in fresh.iterdir()] == []
    # A file the manifest lists but the bucket lacks: a missing object, named.
    client.remove_object(s3_bucket, "models/toy/abc123/use_case.json")
    with pytest.raises(storage.StorageError, match="use_case.json does not exist"):
        download_package(uri, fresh)


def test_two_workers_downloading_one_package_at_once_both_get_the_verified_copy(s3_bucket, tmp_path, monkeypatch):
    """Two server workers start on the same s3:// package with an empty cache: the one whose copy lands second
    used to fail (its rename onto the other's folder: Directory not empty)."""
    from flowline.package import remote

    package = fake_package(tmp_path / "package")
    uri = f"s3://{s3_bucket}/models/toy/race"
    upload_package(package, uri)
    cache = tmp_path / "cache"
    fetch = remote.storage.download_file
    other_worker = []

    def the_other_worker_finishes_first(source, destination, client):
        if not other_worker:  # while this worker downloads its first file, the other lands its whole copy
            other_worker.append(True)
            monkeypatch.setattr(remote.storage, "download_file", fetch)
            other_worker.append(download_package(uri, cache))
            monkeypatch.setattr(remote.storage, "download_file", the_other_worker_finishes_first)
        return fetch(source, destination, client)

    monkeypatch.setattr(remote.storage, "download_file", the_other_worker_finishes_first)
    copy = download_package(uri, cache)
    assert copy == other_worker[1] and verify(copy)["version"] == verify(package)["version"]
    assert sorted(p.name for p in cache.iterdir()) == [copy.name]  # no staging folder left


def test_an_uploaded_package_is_verified_first(s3_bucket, tmp_path):
    package = fake_package(tmp_path / "package")
    (package / "use_case.json").write_text("{}")  # altered after its manifest was written
    with pytest.raises(PackageError, match="use_case.json has sha256"):
        upload_package(package, f"s3://{s3_bucket}/models/bad")
    assert list(storage.s3_client().list_objects(s3_bucket, prefix="models/", recursive=True)) == []


@pytest.mark.parametrize("field, value", [("files", {"../../escaped.json": "0" * 64}),
                                          ("files", {"/tmp/escaped.json": "0" * 64}), ("version", "../../escaped")])
def test_a_stored_manifest_naming_paths_outside_the_package_is_refused_before_any_download(
        s3_bucket, tmp_path, field, value):
    package = fake_package(tmp_path / "package")
    uri = f"s3://{s3_bucket}/models/toy/hostile"
    upload_package(package, uri)
    manifest = json.loads((package / MANIFEST_FILE).read_text())
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps({**manifest, field: value}))
    storage.s3_client().fput_object(s3_bucket, f"models/toy/hostile/{MANIFEST_FILE}", str(hostile))
    cache = tmp_path / "a" / "b" / "cache"
    with pytest.raises(PackageError, match=f"{uri}/{MANIFEST_FILE}: (files entry|version) .*escaped"):
        download_package(uri, cache)
    assert not any(tmp_path.rglob("escaped*")) and not cache.exists()


def test_credentials_can_come_from_a_kubernetes_secret(s3_server, s3_bucket, tmp_path, monkeypatch):
    def respond(method, path, body):
        if path == "/api/v1/namespaces/flowline/secrets/flowline-s3":
            return 200, {"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": "flowline-s3", "namespace": "flowline",
                "annotations": {storage.SECRET_ENDPOINT_ANNOTATION: s3_server.endpoint}},
                "data": {key: base64.b64encode(value.encode()).decode() for key, value in (
                    (storage.ACCESS_KEY_ENV, s3_server.access_key), (storage.SECRET_KEY_ENV, s3_server.secret_key))}}
        return NOT_FOUND
    api = StandInApiServer(respond)
    monkeypatch.setenv("KUBECONFIG", api.kubeconfig(tmp_path))
    for name in (storage.ENDPOINT_ENV, storage.ACCESS_KEY_ENV, storage.SECRET_KEY_ENV):
        monkeypatch.delenv(name)
    monkeypatch.setenv(storage.SECRET_ENV, "flowline/flowline-s3")
    (tmp_path / "a.txt").write_text("from the secret")
    storage.upload_file(tmp_path / "a.txt", f"s3://{s3_bucket}/a.txt")
    assert storage.read_bytes(f"s3://{s3_bucket}/a.txt") == b"from the secret"
    assert api.requests[0]["path"] == "/api/v1/namespaces/flowline/secrets/flowline-s3"
    monkeypatch.setenv(storage.SECRET_ENV, "flowline/missing")
    with pytest.raises(storage.StorageError, match="Secret flowline/missing cannot be read: 404"):
        storage.read_bytes(f"s3://{s3_bucket}/a.txt")


def deployable_package(folder: Path, model: bytes) -> Path:
    """A verified package that passed its gates, as `flowline deploy` reads it (manifest and evaluation; the
    other files every package holds are there, the model's with `model` in it)."""
    (folder / "model").mkdir(parents=True)
    for name in ("model/model.json", "feature_set.json", "use_case.json"):
        (folder / name).write_text("{}")
    (folder / "model" / "weights.json").write_bytes(model)
    (folder / "evaluation.json").write_text(json.dumps({
        "gates_passed": True, "champion_challenger": {"decision": "promote", "reason": "no champion"}}))
    write_manifest(folder, "churn")
    return folder


def test_deploy_applies_only_a_package_that_is_where_kserve_will_read_it(s3_bucket, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    created: dict[str, dict] = {}
    api = StandInApiServer(cluster_with(stored=created))
    package = deployable_package(tmp_path / "package", b'{"trees": 1}')
    uri = f"s3://{s3_bucket}/churn/v1"
    deploy = ["deploy", str(package), "--storage-uri", uri, "--kubeconfig", api.kubeconfig(tmp_path),
              "-o", str(tmp_path / "isvc.yaml"), "--audit-log", str(tmp_path / "audit.jsonl")]
    # Nothing there yet: a model server would fail to start, so nothing is applied.
    assert main(deploy) == 1
    err = capsys.readouterr().err
    assert f"no package at {uri}" in err and f"flowline upload {package} {uri}" in err
    assert api.requests == []
    # Another package there: the server would serve it under this one's name.
    upload_package(deployable_package(tmp_path / "other", b'{"trees": 2}'), f"s3://{s3_bucket}/churn/v2")
    assert main([*deploy[:3], f"s3://{s3_bucket}/churn/v2", *deploy[4:]]) == 1
    assert f"holds package version {verify(tmp_path / 'other')['version']}, not " in capsys.readouterr().err
    assert api.requests == []
    upload_package(package, uri)
    assert main(deploy) == 0
    assert [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in api.requests][:2] == [("GET", "churn"),
                                                                                       ("POST", "inferenceservices")]
    # A package named by its place in object storage is served from there.
    created.clear()
    assert main(["deploy", f"s3://{s3_bucket}/churn/v2", *deploy[4:]]) == 0
    assert created["churn"]["spec"]["predictor"]["model"]["storageUri"] == f"s3://{s3_bucket}/churn/v2"



def test_kfp_artifact_uris_are_read_as_s3_uris():
    assert storage.artifact_object_uri("minio://mlpipeline/v2/artifacts/run/package/model_package") == (
        "s3://mlpipeline/v2/artifacts/run/package/model_package")
    assert storage.artifact_object_uri("s3://bucket/churn/v1") == "s3://bucket/churn/v1"
    assert storage.artifact_object_uri("/local/outputs/quarantine") == "/local/outputs/quarantine"


def test_a_step_failing_on_bad_rows_keeps_its_quarantine_at_its_artifact_uri(s3_bucket, tmp_path, toy_use_case,
                                                                              monkeypatch):
    """KFP uploads a step's outputs only when it succeeds: on a cluster the quarantine of an ingest (or batch) step
    that then fails on it was lost with the pod, while its error pointed at the pod's own path."""
    from flowline.components.ingest.ingestion import ingest_to_files
    from flowline.contract import ContractError

    source = tmp_path / "rows.csv"
    source.write_text("id,age,income,plan,label\n1,30,5.5,pro,yes\n2,old,1,basic,no\n3,x,2,pro,no\n")
    outputs = [str(tmp_path / name) for name in ("kept.parquet", "quarantine.parquet", "profile.md")]
    artifact = f"minio://{s3_bucket}/v2/artifacts/flowline-toy/run-1/ingest/quarantine"  # as KFP names it
    kept_at = f"s3://{s3_bucket}/v2/artifacts/flowline-toy/run-1/ingest/quarantine"
    with pytest.raises(ContractError, match=rf"2 of 3 rows .* The quarantine {kept_at} lists every row"):
        ingest_to_files(toy_use_case, str(source), *outputs, quarantine_uri=artifact)
    assert storage.read_bytes(kept_at) == Path(outputs[1]).read_bytes()

    tolerant = toy_use_case.model_copy(update={"max_bad_fraction": 0.9})  # a step that succeeds: KFP uploads it
    ingest_to_files(tolerant, str(source), *outputs, quarantine_uri=artifact.replace("run-1", "run-2"))
    with pytest.raises(storage.MissingObject):
        storage.read_bytes(kept_at.replace("run-1", "run-2"))

    monkeypatch.setenv(storage.SECRET_KEY_ENV, "not-the-secret")  # the step's own error still comes first
    with pytest.raises(ContractError, match=r"The quarantine .*quarantine.parquet \(lost with the step's pod: it "
                                            r"could not be put at s3://.*refused the credentials"):
        ingest_to_files(toy_use_case, str(source), *outputs, quarantine_uri=artifact)


def test_a_batch_step_failing_on_bad_rows_keeps_its_quarantine_at_its_artifact_uri(s3_bucket, tmp_path):
    from collections import Counter

    from flowline.batch import BatchSummary, enforce_bad_fraction
    from flowline.contract import ContractError
    from flowline.use_case_loader import load_use_case

    quarantine = tmp_path / "quarantine"
    quarantine.write_bytes(b"PAR1 rows with their reasons")
    summary = BatchSummary("abc123", "churn", "customers.csv", "scores", str(quarantine),
                           counts={"rows_in": 10, "rows_scored": 2, "rows_quarantined": 8},
                           reasons=Counter({"tenure: a value that is not a number": 8}))
    kept_at = f"s3://{s3_bucket}/v2/artifacts/churn-batch/run-1/score/quarantine"
    with pytest.raises(ContractError, match=f"The quarantine {kept_at} lists every row"):
        enforce_bad_fraction(summary, load_use_case("churn"), kept_at.replace("s3://", "minio://"))
    assert storage.read_bytes(kept_at) == quarantine.read_bytes()
