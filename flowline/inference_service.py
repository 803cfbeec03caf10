"""InferenceService manifests for model packages, and the canary's promote and rollback patches.

The manifest is the one kustomize/base ships (a test keeps them equal): the flowline
ServingRuntime serving the package at `storageUri`, autoscaling, the payload logger
that feeds the drift monitor through the Broker, and a hardened container. When a
champion is already serving, the new version goes in as a canary
(`canaryTrafficPercent`); promoting removes that field, rolling back sets it to 0
(KServe's Knative-mode canary).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
DEFAULT_NAMESPACE = "flowline"
BROKER_URL = "http://broker-ingress.knative-eventing.svc.cluster.local/flowline/flowline-events"
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class Scaling:
    min_replicas: int = 1
    max_replicas: int = 3
    metric: str = "concurrency"
    target: int = 10
    cpu_request: str = "250m"
    memory_request: str = "512Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"


def inference_service(
    name: str,
    storage_uri: str,
    scaling: Scaling = Scaling(),
    namespace: Optional[str] = None,
    canary_percent: Optional[int] = None,
    logger_url: str = BROKER_URL,
) -> dict:
    """The InferenceService serving the package at `storage_uri` under `name`."""
    predictor = {
        "serviceAccountName": "flowline-models",
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "scaleMetric": scaling.metric,
        "scaleTarget": scaling.target,
        "logger": {"mode": "request", "url": logger_url},
        "model": {
            "modelFormat": {"name": "flowline"},
            "runtime": "flowline",
            "storageUri": storage_uri,
            "resources": {
                "requests": {"cpu": scaling.cpu_request, "memory": scaling.memory_request},
                "limits": {"cpu": scaling.cpu_limit, "memory": scaling.memory_limit},
            },
            "securityContext": CONTAINER_SECURITY,
        },
    }
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = _percent(canary_percent)
    metadata = {
        "name": name,
        "labels": {"flowline.dev/use-case": name, "flowline.dev/component": "model"},
        "annotations": {"serving.kserve.io/enable-tag-routing": "true"},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": {"predictor": predictor}}


def drift_monitor_name(model_name: str) -> str:
    """The InferenceService of a model's drift monitor (kustomize/base/drift-monitors.yaml)."""
    return f"{model_name}-drift"


# JSON merge patches (RFC 7386): null removes a field.
PROMOTE_PATCH = {"spec": {"predictor": {"canaryTrafficPercent": None}}}
ROLLBACK_PATCH = {"spec": {"predictor": {"canaryTrafficPercent": 0}}}


def canary_patch(storage_uri: str, canary_percent: int) -> dict:
    """The merge patch that brings the package at `storage_uri` in as the canary of a serving InferenceService,
    taking `canary_percent` of the traffic; nothing else of the service changes."""
    return {"spec": {"predictor": {"model": {"storageUri": storage_uri},
                                   "canaryTrafficPercent": _percent(canary_percent)}}}


def _percent(canary_percent: int) -> int:
    if not 0 <= canary_percent <= 100:
        raise ValueError(f"canary_percent must be within 0..100, got {canary_percent}")
    return canary_percent


def promoted(manifest: dict) -> dict:
    """The manifest with the canary taking all traffic: canaryTrafficPercent removed."""
    predictor = {k: v for k, v in manifest["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
    return {**manifest, "spec": {**manifest["spec"], "predictor": predictor}}


def rolled_back(manifest: dict) -> dict:
    """The manifest with all traffic back on the champion: canaryTrafficPercent 0."""
    predictor = {**manifest["spec"]["predictor"], "canaryTrafficPercent": 0}
    return {**manifest, "spec": {**manifest["spec"], "predictor": predictor}}
