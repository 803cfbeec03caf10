"""Applying InferenceServices with the kubernetes client: thin, tested up to the requests it sends.

KServeClient's create and replace want its generated model classes; manifests are plain
dicts here, so the kubernetes client's CustomObjectsApi carries them as they are. The
canary's promote and rollback patches go through KServeClient (flowline.canary).

A cluster that cannot be reached, or that refuses the credentials, reaches a person as one
line: kfp.Client, the kubernetes client, KServeClient and KatibClient let such failures out
as chains of urllib3 and ApiException tracebacks (about 100 lines for a closed port), so
callers run their cluster calls inside `talking_to(...)`, which turns those into a ClusterError.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from flowline.inference_service import canary_patch, drift_monitor_name

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
    """Create the InferenceService, or, when one is already serving, bring the new version in as a canary
    taking `canary_percent` of the traffic: a JSON merge patch of the model's storageUri and the canary's
    share only, so that what the live service's overlay set (replicas, resources, labels) stays. Returns
    "created", "canary", or, when the service has this storageUri already (a retried deploy step after its
    first try applied it), "unchanged" (it serves it to all traffic) or "unchanged: already the canary"; a
    canary of the version it serves would split traffic between two revisions of one package. A package rolled
    back (its canary at 0%) comes in as a canary again."""
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
    storage_uri = manifest["spec"]["predictor"]["model"]["storageUri"]
    predictor = current.get("spec", {}).get("predictor", {})
    share = predictor.get("canaryTrafficPercent")
    if predictor.get("model", {}).get("storageUri") == storage_uri and share != 0:  # 0: rolled back, so a canary anew
        return "unchanged" if share is None else "unchanged: already the canary"
    patch = canary_patch(storage_uri, canary_percent)
    patch["metadata"] = {"resourceVersion": current["metadata"]["resourceVersion"]}  # refused if it changed since
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    return "canary"


def follow_served_package(name: str, namespace: str, kubeconfig: Optional[str] = None) -> str:
    """Point the model's drift monitor (the InferenceService `<name>-drift`) at the package the model serves
    now, after it was created or its canary promoted: the monitor tests requests against that package's
    reference rows and detector. A merge patch of the monitor's storageUri alone. Returns what happened,
    in a few words for the record (a model without a drift monitor, as churn-challenger, is left as it is)."""
    from kubernetes.client.rest import ApiException

    api = _custom_objects(kubeconfig)
    served = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    storage_uri = served["spec"]["predictor"]["model"]["storageUri"]
    monitor_name = drift_monitor_name(name)
    try:
        monitor = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, monitor_name)
    except ApiException as error:
        if error.status != 404:
            raise
        return f"no drift monitor {monitor_name}"
    if monitor["spec"]["predictor"]["model"]["storageUri"] == storage_uri:
        return f"{monitor_name} already tests against {storage_uri}"
    patch = {"metadata": {"resourceVersion": monitor["metadata"]["resourceVersion"]},
             "spec": {"predictor": {"model": {"storageUri": storage_uri}}}}
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, monitor_name, patch)
    return f"{monitor_name} now tests against {storage_uri}"


AUTH_STATUSES = {401: "401 Unauthorized", 403: "403 Forbidden"}
# The account pipeline runs run as: kustomize/base/rbac.yaml lets it deploy and create Katib Experiments in
# flowline's namespace, where KFP's default account may do neither.
PIPELINE_SERVICE_ACCOUNT = "flowline-pipeline-runner"
KUBE_CREDENTIALS = "the kubeconfig's credentials and the account's RBAC (kustomize/base/rbac.yaml)"


class ClusterError(RuntimeError):
    """The cluster's API could not be reached or refused the request; the message is one line."""


def kubernetes_api(kubeconfig: Optional[str] = None) -> str:
    """The URL of the Kubernetes API server that `kubeconfig` (else the usual places) points at."""
    return api_client(kubeconfig).configuration.host


@contextlib.contextmanager
def talking_to(service: str, url: str, credentials: str) -> Iterator[None]:
    """Run cluster calls; a connection failure or a 401/403 becomes a ClusterError naming `service` at `url`
    (and, for 401/403, `credentials`: what to check); any other error passes unchanged."""
    try:
        yield
    except Exception as error:
        for cause in _chain(error):
            status = getattr(cause, "status", None)
            if status in AUTH_STATUSES:
                raise ClusterError(f"{service} at {url} refused the request ({AUTH_STATUSES[status]}): "
                                   f"check {credentials}") from None
        for cause in _chain(error):
            if reason := _unreachable(cause):
                raise ClusterError(f"cannot reach {service} at {url}: {reason}") from None
        raise


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it: explicit causes, the error being handled, and urllib3's `reason`."""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(linked for linked in (current.__cause__, current.__context__, getattr(current, "reason", None))
                       if isinstance(linked, BaseException))


def _unreachable(error: BaseException) -> str | None:
    """Why a connection failed, in a few words, or None when `error` is not a connection failure."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the address right, and the port forwarded?)"
    if isinstance(error, socket.gaierror):
        return "unknown host name"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "the connection timed out"
    if isinstance(error, ConnectionError):
        return str(error) or type(error).__name__
    return None
