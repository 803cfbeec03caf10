"""Render the kustomizations with kubectl and validate what they produce against real schemas.

Core kinds go through kubernetes-validate (strict); custom resources go through the upstream
CRD schemas in ../shared/crds, made strict the way `kubectl apply` (field validation Strict)
treats unknown fields: an object schema that lists its properties rejects any other.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from flowline.katib import TRIAL_PROGRAM, TRIAL_SHELL

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "kustomize"
CRDS = ROOT.parent / "shared" / "crds"
TARGETS = ("base", "overlays/dev", "overlays/staging", "overlays/prod")
NAMESPACE = "flowline"
IMAGE = "ghcr.io/flowline-ml/flowline"

# The oldest Kubernetes flowline supports, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CORE_API_GROUPS = {"", "apps", "batch", "rbac.authorization.k8s.io", "networking.k8s.io", "policy", "autoscaling"}

# (group, kind) -> CRD file under ../shared/crds
CRD_FILES = {
    ("serving.kserve.io", "InferenceService"): "kserve/serving.kserve.io_inferenceservices.yaml",
    ("serving.kserve.io", "InferenceGraph"): "kserve/serving.kserve.io_inferencegraphs.yaml",
    ("serving.kserve.io", "ServingRuntime"): "kserve/serving.kserve.io_servingruntimes.yaml",
    ("eventing.knative.dev", "Broker"): "knative/broker.yaml",
    ("eventing.knative.dev", "Trigger"): "knative/trigger.yaml",
    ("monitoring.coreos.com", "PrometheusRule"): "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
    ("monitoring.coreos.com", "ServiceMonitor"): "prometheus-operator/monitoring.coreos.com_servicemonitors.yaml",
}

Doc = dict[str, Any]


def group_of(doc: Doc) -> str:
    """The API group of a document ('' for the core group)."""
    return doc["apiVersion"].rpartition("/")[0]


def is_core(doc: Doc) -> bool:
    return group_of(doc) in CORE_API_GROUPS


def kustomize(directory: Path) -> list[Doc]:
    """Every document `kubectl kustomize DIRECTORY` prints."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH (make tools installs it)")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.load_all(done.stdout, Loader=yaml.CSafeLoader) if doc]


@functools.cache
def _render(target: str) -> tuple[Doc, ...]:
    return tuple(kustomize(KUSTOMIZE / target))


def render(target: str) -> list[Doc]:
    """Every document `kubectl kustomize kustomize/<target>` prints, as fresh copies."""
    return copy.deepcopy(list(_render(target)))


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def crds_dir() -> Path:
    """../shared/crds; skips the test where it is absent, except under CI=true where it fails."""
    if not CRDS.is_dir():
        message = f"upstream CRD schemas not found at {CRDS} (see DESIGN.md, 'Real parts')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CRDS


def forbid_unknown_fields(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema in which every object that lists its properties rejects others.

    Objects that say `additionalProperties` or `x-kubernetes-preserve-unknown-fields` keep
    their own rule.
    """
    schema = copy.deepcopy(schema)
    _close(schema)
    return schema


def _close(node: Any) -> None:
    if not isinstance(node, dict):
        return
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    for child in node.get("properties", {}).values():
        _close(child)
    for key in ("items", "additionalProperties", "not"):
        _close(node.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key, []):
            _close(child)


@functools.cache
def _object_meta_registry() -> tuple[Registry, str]:
    """kubernetes-validate's strict definitions, and the reference to ObjectMeta in them."""
    folder = f"v{kubernetes_validate.latest_version()}-local-strict"
    path = resources.files("kubernetes_validate") / "kubernetes-json-schema" / folder / "_definitions.json"
    definitions = json.loads(path.read_text())
    ref = f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return Registry().with_resource(definitions["$id"], Resource.from_contents(definitions)), ref


@functools.cache
def crd_validator(group: str, kind: str, version: str) -> jsonschema.protocols.Validator:
    """A strict validator for the served `version` of the upstream CRD of group/kind.

    The CRD schemas say at most `metadata: {type: object}` (the API server checks ObjectMeta
    itself), so metadata is checked against Kubernetes' strict ObjectMeta here.
    """
    relative = CRD_FILES.get((group, kind))
    assert relative is not None, f"no upstream CRD schema is known for {group}/{kind}: add it to CRD_FILES"
    crd = yaml.load((crds_dir() / relative).read_text(), Loader=yaml.CSafeLoader)
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    assert version in served, f"{group}/{kind}: version {version} is not served (served: {sorted(served)})"
    schema = forbid_unknown_fields(served[version]["schema"]["openAPIV3Schema"])
    registry, object_meta = _object_meta_registry()
    # The API server allows these three on every custom resource, whether the schema lists them or not.
    schema["properties"].update({
        "apiVersion": {"const": f"{group}/{version}"},
        "kind": {"const": kind},
        "metadata": {"$ref": object_meta},
    })
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_errors(doc: Doc) -> list[str]:
    """Every schema error in a custom resource, as 'path: message'."""
    validator = crd_validator(group_of(doc), doc["kind"], doc["apiVersion"].rpartition("/")[2])
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def pod_specs(doc: Doc) -> Iterator[Doc]:
    """The pod specs of core workload kinds (Pod, Deployment, Job, CronJob, ...)."""
    spec = doc.get("spec", {})
    if doc["kind"] == "Pod":
        yield spec
    elif doc["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif is_core(doc) and "template" in spec:
        yield spec["template"]["spec"]


def containers(doc: Doc) -> Iterator[tuple[str, Doc]]:
    """(where, container) for every container a document defines, core or KServe."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    spec = doc.get("spec", {})
    pod_like: list[Doc] = list(pod_specs(doc))
    if doc["kind"] == "ServingRuntime":
        pod_like.append(spec)
    for pod in pod_like:
        for field in ("initContainers", "containers"):
            for container in pod.get(field, []):
                yield f"{name} {container['name']}", container
    if doc["kind"] == "InferenceService":
        for component in ("predictor", "transformer", "explainer"):
            part = spec.get(component)
            if part is None:
                continue
            if "model" in part:
                yield f"{name} {component}.model", part["model"]
            for container in part.get("containers", []):
                yield f"{name} {component} {container['name']}", container


# Katib's CRDs carry no schema: Experiments are checked against Katib's own swagger, with the
# Kubernetes types it refers to taken from kubernetes-validate, and the trial's Job validated
# as the core kind it is.
KATIB_SWAGGER = "katib/pkg_apis_v1beta1_swagger.json"
KATIB_EXTERNAL = {
    "v1.ObjectMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "v1.ListMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
    "v1.Time": "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "v1.Container": "io.k8s.api.core.v1.Container",
    "v1.HTTPGetAction": "io.k8s.api.core.v1.HTTPGetAction",
}


@functools.cache
def katib_validator() -> jsonschema.protocols.Validator:
    """A strict validator for v1beta1 Experiments from Katib's swagger (unknown fields rejected)."""
    swagger = json.loads((crds_dir() / KATIB_SWAGGER).read_text())
    registry, object_meta = _object_meta_registry()
    base = object_meta.rpartition("#")[0]
    definitions = {name: forbid_unknown_fields(schema) for name, schema in swagger["definitions"].items()}
    definitions.update({name: {"$ref": f"{base}#/$defs/{target}"} for name, target in KATIB_EXTERNAL.items()})
    definitions["v1.unstructured.Unstructured"] = {"type": "object"}  # the trial spec: checked as its own kind
    schema = {"definitions": definitions, "$ref": "#/definitions/v1beta1.Experiment"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def katib_errors(doc: Doc) -> list[str]:
    """Every error in an Experiment: against Katib's swagger, and its trial Job against Kubernetes'."""
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in katib_validator().iter_errors(doc)]
    if doc.get("apiVersion") != "kubeflow.org/v1beta1" or doc.get("kind") != "Experiment":
        errors.append(f"<root>: expected a kubeflow.org/v1beta1 Experiment, got {doc.get('apiVersion')} {doc.get('kind')}")
    job = doc.get("spec", {}).get("trialTemplate", {}).get("trialSpec")
    if job is not None:
        job = {**job, "metadata": {"name": "trial"}}
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(job, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                errors.append(f"spec.trialTemplate.trialSpec ({version}): {error.message}")
    return errors


def trial_args(container: Doc) -> list[str]:
    """A Katib trial container's arguments to the trial program, read back from its one quoted shell line."""
    assert container["command"] == TRIAL_SHELL and len(container["args"]) == 1, container
    words = shlex.split(container["args"][0])
    assert words[:len(TRIAL_PROGRAM)] == TRIAL_PROGRAM, words
    return words[len(TRIAL_PROGRAM):]


def katib_wrapped(container: Doc, metrics_dir: str) -> list[str]:
    """The trial container's command line as Katib's pod webhook rewrites it for the StdOut metrics collector
    with early stopping (katib pkg/webhook/v1beta1/pod/utils.go, wrapWorkerContainer): the command and args
    joined by spaces, unquoted, behind `sh -c` (a command that is already `sh -c` or `bash -c` kept as it is),
    with its output redirected to the metrics file and its marker files after. The kubelet then turns the
    webhook's `$$$$` into the `$$` written here."""
    words = [*container.get("command", []), *container.get("args", [])]
    command = ["sh", "-c"]
    if words[0] in ("sh", "bash") and words[1] == "-c":
        command, words = words[:2], words[2:]
    pid_file = f"{metrics_dir}/$$.pid"
    words += [f"1>{metrics_dir}/metrics.log 2>&1",
              "||", f"if test -f {pid_file} && [ $(head -n 1 {pid_file}) = early-stopped ]; then "
                    "echo Training Container was Early Stopped; else echo Training Container was Failed; exit 1; fi",
              "&&", f"echo completed > {pid_file}"]
    return [*command, " ".join(words)]
