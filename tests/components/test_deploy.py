"""Deploy, promote, rollback: manifests, and KServeClient's requests checked against a stand-in API server."""

import http.server
import json
import threading
from pathlib import Path

import pytest
import yaml

from flowline.components.deploy.cluster import apply, kubeconfig_available, promote, rollback
from flowline.components.deploy.inference_service import inference_service, promoted, rolled_back, storage_uri_of

ROOT = Path(__file__).resolve().parents[2]
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/flowline/inferenceservices"


class StandInApiServer:
    """Records every request and answers like the API server would for one InferenceService."""

    def __init__(self, existing: dict | None) -> None:
        self.existing = existing
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                outer.requests.append({"method": self.command, "path": self.path,
                                       "content_type": self.headers.get("Content-Type"), "body": body})
                if self.command == "GET" and outer.existing is None:
                    status, answer = 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
                else:
                    status, answer = 200, body or outer.existing
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kubeconfig(self, folder: Path) -> str:
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{self.server.server_port}"}}],
            "users": [{"name": "test", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "flowline"}}],
        }))
        return str(path)


@pytest.fixture
def no_cluster(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))


def test_the_rendered_service_is_the_one_kustomize_ships():
    shipped = next(d for d in yaml.safe_load_all((ROOT / "kustomize/base/inference-services.yaml").read_text())
                   if d["metadata"]["name"] == "churn")
    assert inference_service("churn", "s3://flowline-models/churn/current") == shipped


def test_a_canary_percent_is_set_checked_and_removed_or_zeroed():
    manifest = inference_service("churn", "s3://b/churn/v2", canary_percent=10)
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert "canaryTrafficPercent" not in promoted(manifest)["spec"]["predictor"]
    assert rolled_back(manifest)["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert manifest["spec"]["predictor"]["canaryTrafficPercent"] == 10  # the input is left as it was
    with pytest.raises(ValueError, match="0..100"):
        inference_service("churn", "s3://b/churn/v2", canary_percent=120)


def test_kfp_artifact_uris_become_s3_uris():
    assert storage_uri_of("minio://mlpipeline/v2/artifacts/run/package/model_package") == (
        "s3://mlpipeline/v2/artifacts/run/package/model_package")
    assert storage_uri_of("s3://bucket/churn/v1") == "s3://bucket/churn/v1"


def test_a_new_service_is_created(tmp_path):
    api = StandInApiServer(existing=None)
    manifest = inference_service("churn", "s3://b/churn/v1", namespace="flowline")
    assert apply(manifest, "flowline", api.kubeconfig(tmp_path)) == "created"
    get, create = api.requests
    assert (get["method"], get["path"]) == ("GET", f"{ISVC_PATH}/churn")
    assert (create["method"], create["path"]) == ("POST", ISVC_PATH)
    assert create["body"] == manifest


def test_a_serving_champion_gets_the_new_version_as_a_canary(tmp_path):
    champion = inference_service("churn", "s3://b/churn/v1", namespace="flowline")
    champion["metadata"]["resourceVersion"] = "4711"
    api = StandInApiServer(existing=champion)
    challenger = inference_service("churn", "s3://b/churn/v2", namespace="flowline")
    assert apply(challenger, "flowline", api.kubeconfig(tmp_path), canary_percent=20) == "canary"
    replace = api.requests[-1]
    assert (replace["method"], replace["path"]) == ("PUT", f"{ISVC_PATH}/churn")
    assert replace["body"]["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert replace["body"]["spec"]["predictor"]["model"]["storageUri"] == "s3://b/churn/v2"
    assert replace["body"]["metadata"]["resourceVersion"] == "4711"


@pytest.mark.parametrize(("operation", "expected"), [(promote, None), (rollback, 0)])
def test_promote_and_rollback_are_merge_patches(tmp_path, operation, expected):
    api = StandInApiServer(existing=inference_service("churn", "s3://b/churn/v1", namespace="flowline"))
    operation("churn", "flowline", api.kubeconfig(tmp_path))
    patch = api.requests[-1]
    assert (patch["method"], patch["path"]) == ("PATCH", f"{ISVC_PATH}/churn")
    assert patch["content_type"] == "application/merge-patch+json"
    assert patch["body"] == {"spec": {"predictor": {"canaryTrafficPercent": expected}}}


def test_a_cluster_is_found_only_when_one_is_configured(no_cluster, tmp_path, monkeypatch):
    assert not kubeconfig_available()
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\n")
    assert kubeconfig_available(str(config))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert kubeconfig_available()


def test_flowline_deploy_without_a_cluster_writes_the_manifest_and_promote_edits_it(
    no_cluster, churn_package_for_deploy, tmp_path
):
    from flowline.pipelines.cli import main

    manifest = tmp_path / "churn.yaml"
    assert main(["deploy", str(churn_package_for_deploy), "-o", str(manifest), "--storage-uri", "s3://b/churn/v9"]) == 0
    written = yaml.safe_load(manifest.read_text())
    assert written["spec"]["predictor"]["model"]["storageUri"] == "s3://b/churn/v9"
    assert written["metadata"]["namespace"] == "flowline"
    assert main(["rollback", "--manifest", str(manifest)]) == 0
    assert yaml.safe_load(manifest.read_text())["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert main(["promote", "--manifest", str(manifest)]) == 0
    assert "canaryTrafficPercent" not in yaml.safe_load(manifest.read_text())["spec"]["predictor"]
    assert main(["promote", "churn"]) == 1  # no kubeconfig and no manifest: a clear refusal


@pytest.fixture
def churn_package_for_deploy(tmp_path) -> Path:
    """A minimal verified package: deploy reads only the manifest and the evaluation."""
    from flowline.components.package.model_package import write_manifest

    package = tmp_path / "package"
    package.mkdir()
    (package / "evaluation.json").write_text(json.dumps({"gates_passed": True}))
    write_manifest(package, "churn")
    return package
