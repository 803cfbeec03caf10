"""Applying InferenceServices with the kubernetes client: thin, tested up to the requests it sends.

KServeClient's create and replace want its generated model classes; manifests are plain
dicts here, so the kubernetes client's CustomObjectsApi carries them as they are. The
canary's promote and rollback patches go through KServeClient (flowline.canary).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def kubeconfig_available(kubeconfig: Optional[str] = None) -> bool:
    """A cluster is reachable when given a kubeconfig, $KUBECONFIG, ~/.kube/config, or running in a pod."""
    candidates = [kubeconfig, os.environ.get("KUBECONFIG"), str(Path("~/.kube/config").expanduser())]
    return bool(os.environ.get(IN_CLUSTER_ENV)) or any(c and Path(c).is_file() for c in candidates)


def api_client(kubeconfig: Optional[str] = None):
    """A kubernetes ApiClient for the given kubeconfig, else the pod's service account, else the default
    kubeconfig ($KUBECONFIG as it is now: the kubernetes client reads it only once, on import)."""
    from kubernetes import client, config

    if kubeconfig is None and os.environ.get(IN_CLUSTER_ENV):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(config_file=kubeconfig or os.environ.get("KUBECONFIG"))


def _custom_objects(kubeconfig: Optional[str]):
    from kubernetes import client

    return client.CustomObjectsApi(api_client(kubeconfig))


def apply(manifest: dict, namespace: str, kubeconfig: Optional[str] = None, canary_percent: int = 10) -> str:
    """Create the InferenceService, or, when one is already serving, replace it with the new
    version as a canary taking `canary_percent` of the traffic. Returns "created" or "canary"."""
    from kubernetes.client.rest import ApiException

    api = _custom_objects(kubeconfig)
    name = manifest["metadata"]["name"]
    try:
        current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as error:
        if error.status != 404:
            raise
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
        return "created"
    canary = {**manifest, "metadata": {**manifest["metadata"],
                                       "resourceVersion": current["metadata"]["resourceVersion"]}}
    canary["spec"] = {**manifest["spec"], "predictor": {**manifest["spec"]["predictor"],
                                                         "canaryTrafficPercent": canary_percent}}
    api.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, canary)
    return "canary"

