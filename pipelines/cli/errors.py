"""A cluster that cannot be reached, or that refuses the credentials, as one line a person can act on.

kfp.Client, the kubernetes client and KServeClient let such failures out as chains of
urllib3 and ApiException tracebacks (about 100 lines for a closed port). The cluster
commands run their calls inside `talking_to(...)`, which turns those into a ClusterError;
main() prints it as one line.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Optional

AUTH_STATUSES = {401: "401 Unauthorized", 403: "403 Forbidden"}
KUBE_CREDENTIALS = "the kubeconfig's credentials and the account's RBAC (kustomize/base/rbac.yaml)"


class ClusterError(RuntimeError):
    """The cluster's API could not be reached or refused the request; the message is one line."""


def kubernetes_api(kubeconfig: Optional[str] = None) -> str:
    """The URL of the Kubernetes API server that `kubeconfig` (else the usual places) points at."""
    from flowline.cluster import api_client

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
