"""The online store's kustomization (kustomize/online-store): one hardened Redis that only model servers reach,
at the address the model server's runtime names."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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


def test_a_real_redis_with_the_deployment_s_arguments_refuses_writes_before_its_memory_limit(tmp_path) -> None:
    """Started with the Deployment's memory settings, the real redis-server caps its data well inside the container's
    limit and refuses writes there (noeviction: an entity's history is never dropped to make room)."""
    from redis_server import redis_server_binary, running_redis

    redis = one(render(TARGET), "Deployment", "flowline-online-store")["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    memory = [arg for flag in ("--maxmemory", "--maxmemory-policy") for arg in args[args.index(flag):args.index(flag) + 2]]
    with running_redis(redis_server_binary(), tmp_path, tuple(memory)) as url:
        cli = [str(Path(redis_server_binary()).with_name("redis-cli")), "-u", url]
        cap = int(run_cli(cli, "config", "get", "maxmemory").split()[1])
        assert 0 < cap <= 0.7 * 1024 ** 3 and redis["resources"]["limits"]["memory"] == "1Gi"
        assert run_cli(cli, "config", "get", "maxmemory-policy").split()[1] == "noeviction"


def test_the_readiness_probe_passes_on_pong_only(tmp_path) -> None:
    """redis-cli exits 0 on an error reply as well (LOADING, while Redis replays its file): the probe reads the
    answer. Checked on a real redis-server answering PONG, then an error (NOAUTH) to the same PING."""
    from redis_server import redis_server_binary, running_redis

    redis = one(render(TARGET), "Deployment", "flowline-online-store")["spec"]["template"]["spec"]["containers"][0]
    shell, flag, probe = redis["readinessProbe"]["exec"]["command"]
    with running_redis(redis_server_binary(), tmp_path) as url:
        cli = str(Path(redis_server_binary()).with_name("redis-cli"))
        local_probe = probe.replace("redis-cli", f"{cli} -u {url}", 1)
        assert subprocess.run([shell, flag, local_probe], env=redis_environment()).returncode == 0
        run_cli([cli, "-u", url], "config", "set", "requirepass", "secret")
        assert subprocess.run([shell, flag, local_probe], env=redis_environment()).returncode == 1


def redis_environment() -> dict:
    """redis-cli unpacked by `make tools` links libraries beside it."""
    from redis_server import redis_server_binary

    libraries = Path(redis_server_binary()).resolve().parents[1] / "lib" / "x86_64-linux-gnu"
    return {**os.environ, "LD_LIBRARY_PATH": str(libraries)}


def run_cli(cli: list[str], *command: str) -> str:
    result = subprocess.run([*cli, *command], capture_output=True, text=True, env=redis_environment(), timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout
