"""Pod security (the restricted standard, enforced on the namespace), resources, credentials and RBAC of
everything the kustomizations render."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from flowline.use_case_loader import built_in_use_cases

from manifest_helpers import (KUSTOMIZE, NAMESPACE, TARGETS, Doc, containers, crd_errors, crds_dir, find, one,
                              pod_specs, render)

CREDENTIAL_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)
# The volume types the restricted Pod Security Standard allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def container_problems(container: Doc) -> list[str]:
    """What a container lacks of the hardening and resources every flowline container must have."""
    context = container.get("securityContext", {})
    resources = container.get("resources", {})
    wanted = {
        "runAsNonRoot": context.get("runAsNonRoot") is True,
        "runAsUser 1000": context.get("runAsUser") == 1000,
        "readOnlyRootFilesystem": context.get("readOnlyRootFilesystem") is True,
        "allowPrivilegeEscalation false": context.get("allowPrivilegeEscalation") is False,
        "capabilities drop ALL": "ALL" in context.get("capabilities", {}).get("drop", []),
        "seccompProfile RuntimeDefault": context.get("seccompProfile", {}).get("type") == "RuntimeDefault",
    }
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            wanted[f"{kind}.{resource}"] = resource in resources.get(kind, {})
    return [name for name, ok in wanted.items() if not ok]


def credential_problems(container: Doc) -> list[str]:
    """Env vars named like credentials that carry an inline value instead of a Secret reference."""
    return [
        env["name"] for env in container.get("env", [])
        if CREDENTIAL_NAME.search(env["name"]) and ("value" in env or "secretKeyRef" not in env.get("valueFrom", {}))
    ]


def tmp_problems(pod: Doc) -> list[str]:
    """Containers of a pod-like spec with no writable /tmp from an emptyDir volume."""
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    return [
        c["name"] for c in pod["containers"]
        if not any(m["mountPath"] == "/tmp" and m["name"] in empty_dirs for m in c.get("volumeMounts", []))
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_is_hardened_and_has_requests_and_limits(target: str) -> None:
    found = dict(item for doc in render(target) for item in containers(doc))
    # two runtimes, four models and three drift monitors at least
    assert len(found) >= 9
    problems = {where: container_problems(c) for where, c in found.items()}
    assert not {where: missing for where, missing in problems.items() if missing}


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_non_root_and_every_read_only_container_gets_a_tmp_dir(target: str) -> None:
    docs = render(target)
    runtimes = find(docs, "ServingRuntime")
    assert runtimes
    for doc in docs:
        for pod in pod_specs(doc):
            context = pod.get("securityContext", {})
            assert context.get("runAsNonRoot") is True, doc["metadata"]["name"]
            assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", doc["metadata"]["name"]
            assert not tmp_problems(pod), doc["metadata"]["name"]
    for runtime in runtimes:
        assert not tmp_problems(runtime["spec"]), runtime["metadata"]["name"]


def pods(doc: Doc) -> Iterator[tuple[str, Doc, list[Doc]]]:
    """(where, pod-level spec, its containers) for every pod a document describes: core workloads,
    ServingRuntimes, and the components of an InferenceService (whose `model` is a container)."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    for pod in pod_specs(doc):
        yield name, pod, pod.get("initContainers", []) + pod["containers"]
    if doc["kind"] == "ServingRuntime":
        yield name, doc["spec"], doc["spec"]["containers"]
    if doc["kind"] == "InferenceService":
        for component in ("predictor", "transformer", "explainer"):
            part = doc["spec"].get(component)
            if part is not None:
                model = [part["model"]] if "model" in part else []
                yield f"{name} {component}", part, model + part.get("containers", [])


def restricted_problems(pod: Doc, pod_containers: list[Doc]) -> list[str]:
    """What breaks the restricted Pod Security Standard (as Pod Security Admission checks it) in a pod."""
    problems = [field for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field)]
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {', '.join(sorted(kinds - RESTRICTED_VOLUMES))}")
    pod_context = pod.get("securityContext", {})
    for container in pod_containers:
        context = container.get("securityContext", {})
        capabilities = context.get("capabilities", {})
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        wanted = {
            "not privileged": not context.get("privileged"),
            "allowPrivilegeEscalation false": context.get("allowPrivilegeEscalation") is False,
            "runAsNonRoot": context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True,
            "runAsUser not 0": context.get("runAsUser", pod_context.get("runAsUser")) != 0,
            "seccompProfile RuntimeDefault or Localhost": seccomp in ("RuntimeDefault", "Localhost"),
            "capabilities drop ALL": "ALL" in capabilities.get("drop", []),
            "capabilities add at most NET_BIND_SERVICE": set(capabilities.get("add", [])) <= {"NET_BIND_SERVICE"},
            "no hostPort": not any(port.get("hostPort") for port in container.get("ports", [])),
        }
        problems += [f"{container.get('name', 'model')}: {name}" for name, ok in wanted.items() if not ok]
    return problems


@pytest.mark.parametrize("target", TARGETS)
def test_the_namespace_enforces_the_restricted_pod_security_standard(target: str) -> None:
    labels = one(render(target), "Namespace", NAMESPACE)["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "v1.30"  # the oldest Kubernetes supported


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_satisfies_the_restricted_standard(target: str) -> None:
    found = [item for doc in render(target) for item in pods(doc)]
    assert len(found) >= 11  # two runtimes, five models, four drift monitors
    assert {where: problems for where, pod, pod_containers in found
            if (problems := restricted_problems(pod, pod_containers))} == {}


def test_the_restricted_check_can_fail() -> None:
    runtime = one(render("base"), "ServingRuntime", "flowline")["spec"]
    assert restricted_problems(runtime, runtime["containers"]) == []
    runtime["hostNetwork"] = True
    runtime["volumes"].append({"name": "host", "hostPath": {"path": "/etc"}})
    (container,) = runtime["containers"]
    del container["securityContext"]["seccompProfile"]
    container["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    container["ports"][0]["hostPort"] = 8080
    assert restricted_problems(runtime, runtime["containers"]) == [
        "hostNetwork", "volume host: hostPath", "kserve-container: seccompProfile RuntimeDefault or Localhost",
        "kserve-container: capabilities add at most NET_BIND_SERVICE", "kserve-container: no hostPort"]
    runtime["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}  # pod level counts too
    assert "kserve-container: seccompProfile RuntimeDefault or Localhost" not in restricted_problems(runtime,
                                                                                                     [container])


def test_inference_graphs_have_no_security_context_field_so_the_cluster_hardens_their_routers() -> None:
    """KServe's InferenceGraph schema (up to its 0.20 development line) has no securityContext anywhere: a graph
    that sets one is refused. KServe hardens the router itself (non-root, read-only, no privilege escalation, no
    capabilities) and Knative's secure-pod-defaults adds the RuntimeDefault seccomp profile that the restricted
    namespace requires (kustomize/README.md, "Pod security"). When the schema gains the field, set it."""
    crd = (crds_dir() / "kserve/serving.kserve.io_inferencegraphs.yaml").read_text()
    assert "securityContext" not in crd and "seccompProfile" not in crd
    graph = one(render("base"), "InferenceGraph", "churn-ab")
    assert crd_errors(graph) == []
    graph["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert any("securityContext" in error for error in crd_errors(graph))
    readme = (KUSTOMIZE / "README.md").read_text()
    assert "secure-pod-defaults" in readme and "InferenceGraph" in readme


@pytest.mark.parametrize("target", TARGETS)
def test_knative_served_pods_set_security_per_container(target: str) -> None:
    """Knative rejects a pod-level securityContext unless kubernetes.podspec-securitycontext is on."""
    for service in find(render(target), "InferenceService"):
        assert "securityContext" not in service["spec"]["predictor"], service["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_inference_graph_routers_have_requests_and_limits(target: str) -> None:
    graphs = find(render(target), "InferenceGraph")
    assert len(graphs) == 2
    for graph in graphs:
        resources = graph["spec"]["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_the_container_checks_can_fail() -> None:
    runtime = one(render("base"), "ServingRuntime", "flowline")
    container = runtime["spec"]["containers"][0]
    assert container_problems(container) == [] and credential_problems(container) == []
    container["securityContext"]["readOnlyRootFilesystem"] = False
    del container["resources"]["limits"]["memory"]
    container["env"].append({"name": "AWS_SECRET_ACCESS_KEY", "value": "inline"})
    container["volumeMounts"] = []
    assert container_problems(container) == ["readOnlyRootFilesystem", "limits.memory"]
    assert credential_problems(container) == ["AWS_SECRET_ACCESS_KEY"]
    assert tmp_problems(runtime["spec"]) == ["kserve-container"]


@pytest.mark.parametrize("target", TARGETS)
def test_no_credentials_are_committed(target: str) -> None:
    docs = render(target)
    for doc in docs:
        assert not (doc["kind"] == "Secret" and (doc.get("data") or doc.get("stringData"))), doc["metadata"]["name"]
        for where, container in containers(doc):
            assert not credential_problems(container), where


def test_model_servers_run_as_the_models_account_which_mounts_no_token_and_lists_the_s3_secret() -> None:
    docs = render("base")
    account = one(docs, "ServiceAccount", "flowline-models")
    assert account["automountServiceAccountToken"] is False
    assert account["secrets"] == [{"name": "flowline-s3"}]
    services = find(docs, "InferenceService")
    assert len(services) == 2 * len(built_in_use_cases()) + 1  # models, drift monitors, churn's challenger
    assert {s["spec"]["predictor"]["serviceAccountName"] for s in services} == {"flowline-models"}


def rules(docs: list[Doc], role: str) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs granted by a Role."""
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in one(docs, "Role", role)["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_rbac_is_namespaced_least_privilege_without_wildcards() -> None:
    docs = render("base")
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    for role in find(docs, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)

    read = {"get", "list", "watch"}
    deployer = rules(docs, "flowline-deployer")
    assert deployer == {("serving.kserve.io", "inferenceservices"): read | {"create", "update", "patch"}}
    runner = rules(docs, "flowline-pipeline-runner")
    assert runner[("kubeflow.org", "experiments")] == read | {"create", "delete"}
    assert runner[("kubeflow.org", "trials")] == runner[("kubeflow.org", "suggestions")] == read
    assert runner[("", "pods")] == runner[("", "pods/log")] == read
    assert runner[("serving.kserve.io", "inferenceservices")] == read | {"create", "update", "patch"}
    # What KFP itself needs, and no more: named config and secret only, task results.
    assert runner[("argoproj.io", "workflowtaskresults")] == {"create", "patch"}
    assert runner[("", "configmaps")] == runner[("", "secrets")] == {"get"}
    assert all(rule.get("resourceNames") for rule in one(docs, "Role", "flowline-pipeline-runner")["rules"]
               if rule["resources"] in (["configmaps"], ["secrets"]))


def test_each_role_is_bound_to_its_own_service_account() -> None:
    docs = render("base")
    accounts = {a["metadata"]["name"] for a in find(docs, "ServiceAccount")}
    for binding in find(docs, "RoleBinding"):
        name = binding["metadata"]["name"]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]
        assert name in accounts
    assert {b["metadata"]["name"] for b in find(docs, "RoleBinding")} == {"flowline-deployer", "flowline-pipeline-runner"}
