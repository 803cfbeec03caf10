"""Pod security, resources, credentials and RBAC of everything the kustomizations render."""

from __future__ import annotations

import re

import pytest

from flowline.pipelines.use_case import built_in_use_cases

from manifest_helpers import NAMESPACE, TARGETS, Doc, containers, find, one, pod_specs, render

CREDENTIAL_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)


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
    assert deployer == {
        ("serving.kserve.io", "inferenceservices"): read | {"create", "update", "patch"},
        ("serving.kserve.io", "inferencegraphs"): read | {"create", "update", "patch"},
    }
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
