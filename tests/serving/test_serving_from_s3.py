"""The model server loads its package from s3:// (a real S3 server on loopback), verified file by file."""

import json

import httpx
import pytest

from flowline import storage
from flowline.package.format import MANIFEST_FILE, verify
from flowline.package.remote import CACHE_ENV, upload_package
from flowline.inference_services.local_server import running_server
from serving_helpers import AUTHORIZED, records_of, repository_env

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


def test_a_package_in_object_storage_is_served_and_a_corrupted_one_refused_while_the_old_keeps_serving(
        churn_package, churn_test_rows, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # the server process inherits the environment
    uri = f"s3://{s3_bucket}/models/churn/current"
    version = upload_package(churn_package, uri)["version"]
    record = records_of(churn_test_rows.head(1))
    with running_server([uri], log_path=str(tmp_path / "server.log"), env=repository_env()) as url, \
            httpx.Client(base_url=url) as client:
        answer = client.post("/v1/models/churn:predict", json={"instances": record})  # named by its manifest
        assert answer.status_code == 200 and answer.json()["model_version"] == version

        # A new version lands in the bucket with one file damaged: the reload fetches it, refuses it by
        # name, and the running version keeps serving.
        client_s3 = storage.s3_client()
        evil = tmp_path / "model.json"
        evil.write_text('{"learner": {"evil": 1}}')
        model_file = next(name for name in verify(churn_package)["files"] if name.startswith("model/"))
        client_s3.fput_object(s3_bucket, f"models/churn/current/{model_file}", str(evil))
        manifest = json.loads((churn_package / MANIFEST_FILE).read_text())
        newer = tmp_path / MANIFEST_FILE
        newer.write_text(json.dumps({**manifest, "version": "d4m4g3d00000"}))
        client_s3.fput_object(s3_bucket, f"models/churn/current/{MANIFEST_FILE}", str(newer))
        refused = client.post("/v2/repository/models/churn/load", headers=AUTHORIZED)
        assert refused.status_code == 409 and "has sha256" in refused.text and model_file in refused.text
        again = client.post("/v1/models/churn:predict", json={"instances": record})
        assert again.status_code == 200 and again.json()["model_version"] == version

    # A server asked to start on the damaged package does not start, and says why.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))
    with pytest.raises(RuntimeError, match="has sha256"):
        with running_server([f"churn={uri}"], log_path=str(tmp_path / "refused.log"), ready_timeout=60):
            pass
