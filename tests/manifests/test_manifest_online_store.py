"""The online store's kustomization (kustomize/online-store): one hardened Redis that only model servers reach,
at the address the model server's runtime names."""

from __future__ import annotations

import kubernetes_validate
import pytest
from manifest_helpers import KUBERNETES_VERSIONS, containers, find, one, render
from test_manifest_security import container_problems, pods, restricted_problems
from test_manifest_wiring import selects

TARGET = "online-store"
STORE = {"app.kubernetes.io/name": "flowline-online-store"}
MODEL_POD = {"serving.kserve.io/inferenceservice": "fraud"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_it_renders_and_passes_kubernetes_validate_strict(version: str) -> None:
    docs = render(TARGET)
    assert sorted(d["kind"] for d in docs) == ["Deployment", "NetworkPolicy", "NetworkPolicy",
                                               "PersistentVolumeClaim", "Service"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == "flowline"
        kubernetes_validate.validate(doc, version, strict=True)


def test_redis_is_hardened_and_satisfies_the_restricted_standard() -> None:
    docs = render(TARGET)
    found = dict(item for doc in docs for item in containers(doc))
    assert list(found) == ["Deployment/flowline-online-store redis"]
    assert container_problems(found["Deployment/flowline-online-store redis"]) == []
    assert {where: problems for doc in docs for where, pod, cs in pods(doc)
            if (problems := restricted_problems(pod, cs))} == {}


def test_the_runtime_s_store_url_reaches_the_service_and_only_model_servers_may_connect() -> None:
    docs = render(TARGET)
    (container,) = one(render("base"), "ServingRuntime", "flowline")["spec"]["containers"]
    url = container["args"][container["args"].index("--online-store") + 1]
    service = one(docs, "Service", "flowline-online-store")["spec"]
    assert url == f"redis://flowline-online-store:{service['ports'][0]['port']}/0"
    deployment = one(docs, "Deployment", "flowline-online-store")["spec"]
    assert selects({"matchLabels": service["selector"]}, deployment["template"]["metadata"]["labels"])
    redis = deployment["template"]["spec"]["containers"][0]
    assert {"containerPort": service["ports"][0]["targetPort"], "protocol": "TCP"} in redis["ports"]
    assert "--appendonly" in redis["args"] and {"name": "data", "mountPath": "/data"} in redis["volumeMounts"]
    ingress = one(docs, "NetworkPolicy", "allow-online-store-ingress")["spec"]
    assert selects(ingress["podSelector"], STORE) and ingress["policyTypes"] == ["Ingress"]
    (rule,) = ingress["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # pods of this namespace only, and of them only model servers
    assert selects(peer["podSelector"], MODEL_POD) and not selects(peer["podSelector"], {"app": "other"})
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    egress = one(docs, "NetworkPolicy", "allow-model-online-store-egress")["spec"]
    assert selects(egress["podSelector"], MODEL_POD) and not selects(egress["podSelector"], STORE)
    (rule,) = egress["egress"]
    assert [p["podSelector"] for p in rule["to"]] == [{"matchLabels": STORE}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert find(docs, "NetworkPolicy", "default-deny") == []  # the base's default-deny covers the store's pod
