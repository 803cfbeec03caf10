"""The objects refer to each other correctly: runtimes, payload log, triggers, graphs, network."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest

from flowline.use_case_loader import built_in_use_cases

from manifest_helpers import NAMESPACE, TARGETS, Doc, find, one, render

USE_CASES = tuple(built_in_use_cases())  # each has a model, a drift monitor and its triggers
MODELS = (*USE_CASES, "churn-challenger")


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return render("base")


def test_models_and_monitors_use_a_runtime_that_serves_their_format(base: list[Doc]) -> None:
    runtimes = {r["metadata"]["name"]: r["spec"] for r in find(base, "ServingRuntime")}
    for service in find(base, "InferenceService"):
        model = service["spec"]["predictor"]["model"]
        formats = {(f["name"], f.get("autoSelect")) for f in runtimes[model["runtime"]]["supportedModelFormats"]}
        assert (model["modelFormat"]["name"], True) in formats, service["metadata"]["name"]


def test_runtimes_run_the_flowline_server_on_8080(base: list[Doc]) -> None:
    modes = {"flowline": [], "flowline-drift": ["--drift-monitor"]}  # both are `flowline serve`
    after = {"flowline": ["--online-store", "redis://flowline-online-store:6379/0"],
             "flowline-drift": ["--workers", "0"]}  # 0: one per CPU, the model server's default already
    for name, mode in modes.items():
        (container,) = one(base, "ServingRuntime", name)["spec"]["containers"]
        assert container["name"] == "kserve-container"
        assert container["command"] == ["flowline", "serve"]
        assert container["args"] == [*mode, "{{.Name}}=/mnt/models", "--port", "8080", *after[name]]
        assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
        assert {"name": "FLOWLINE_SERVE_HOST", "value": "0.0.0.0"} in container["env"]
        signing = {"secretKeyRef": {"name": "flowline-signing-key", "key": "key", "optional": True}}
        assert {"name": "FLOWLINE_SIGNING_KEY", "valueFrom": signing} in container["env"]  # package signatures


def test_models_log_requests_to_the_broker_and_support_tag_routing(base: list[Doc]) -> None:
    broker = one(base, "Broker", "flowline-events")
    expected = f"http://broker-ingress.knative-eventing.svc.cluster.local/{NAMESPACE}/{broker['metadata']['name']}"
    for name in MODELS:
        service = one(base, "InferenceService", name)
        predictor = service["spec"]["predictor"]
        assert predictor["logger"] == {"mode": "request", "url": expected}
        assert service["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
        assert predictor["model"]["storageUri"] == f"s3://flowline-models/{name}/current"
        assert predictor["scaleMetric"] == "concurrency"
        assert "canaryTrafficPercent" not in predictor


def test_each_use_case_has_one_drift_monitor_on_its_model_package(base: list[Doc]) -> None:
    for name in USE_CASES:
        predictor = one(base, "InferenceService", f"{name}-drift")["spec"]["predictor"]
        assert predictor["model"]["storageUri"] == one(base, "InferenceService", name)["spec"]["predictor"]["model"]["storageUri"]
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 1)
        assert "logger" not in predictor


def test_triggers_route_requests_and_pipeline_runs_to_the_matching_monitor(base: list[Doc]) -> None:
    triggers = {t["metadata"]["name"]: t["spec"] for t in find(base, "Trigger")}
    assert set(triggers) == {f"{n}-{s}" for n in USE_CASES for s in ("drift", "pipeline-runs")}
    monitors = {s["metadata"]["name"] for s in find(base, "InferenceService")}
    for name in USE_CASES:
        assert triggers[f"{name}-drift"]["filter"]["attributes"] == {
            "type": "org.kubeflow.serving.inference.request", "inferenceservicename": name}
        assert triggers[f"{name}-pipeline-runs"]["filter"]["attributes"] == {
            "type": "dev.flowline.pipeline.run.finished", "usecase": name}
        for trigger in (triggers[f"{name}-drift"], triggers[f"{name}-pipeline-runs"]):
            assert trigger["broker"] == "flowline-events"
            url = urlsplit(trigger["subscriber"]["uri"])
            monitor = url.hostname.removesuffix(f"-predictor.{NAMESPACE}.svc.cluster.local")
            assert monitor == f"{name}-drift" and monitor in monitors
            assert url.path == f"/v1/models/{monitor}:predict"


def test_the_challengers_requests_reach_no_drift_monitor_as_its_graphs_share_the_champions(base: list[Doc]) -> None:
    """churn-challenger gets a random tenth of churn's requests (churn-ab) or the very same ones (churn-ensemble),
    which churn's monitor sees through churn. Sent to the monitor too, the ensemble's would be counted twice, and a
    window of repeated rows finds drift where there is none. A graph that sends the challenger requests without
    churn would leave them unmonitored: it needs a monitor of its own (RUNBOOKS.md, FlowlineDriftMonitorMissing)."""
    routed = {t["spec"]["filter"]["attributes"].get("inferenceservicename") for t in find(base, "Trigger")}
    assert "churn-challenger" not in routed
    for graph in find(base, "InferenceGraph"):
        steps = {step["serviceName"] for node in graph["spec"]["nodes"].values() for step in node["steps"]}
        assert "churn-challenger" not in steps or "churn" in steps, graph["metadata"]["name"]


def test_inference_graphs_split_and_ensemble_existing_models(base: list[Doc]) -> None:
    services = {s["metadata"]["name"] for s in find(base, "InferenceService")}
    ab = one(base, "InferenceGraph", "churn-ab")["spec"]["nodes"]["root"]
    assert ab["routerType"] == "Splitter"
    assert {s["serviceName"]: s["weight"] for s in ab["steps"]} == {"churn": 90, "churn-challenger": 10}
    ensemble = one(base, "InferenceGraph", "churn-ensemble")["spec"]["nodes"]["root"]
    assert ensemble["routerType"] == "Ensemble"
    assert [s["serviceName"] for s in ensemble["steps"]] == ["churn", "churn-challenger"]
    assert {s["serviceName"] for node in (ab, ensemble) for s in node["steps"]} <= services


# A small NetworkPolicy evaluator: enough of the semantics for the selectors used here.

def selects(selector: Doc, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        present = expression["key"] in labels
        if expression["operator"] == "Exists" and not present:
            return False
        if expression["operator"] == "In" and labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def peer_matches(peer: Doc, other: str | dict[str, str]) -> bool:
    """Whether a policy peer covers `other`: a namespace's name (any pod in it), the labels of a pod in
    flowline's namespace (a podSelector alone covers those), or an IP address outside the pod network (only
    an ipBlock covers that)."""
    if isinstance(other, dict):
        return list(peer) == ["podSelector"] and selects(peer["podSelector"], other)
    try:
        address = ipaddress.ip_address(other)
    except ValueError:
        return "ipBlock" not in peer and "podSelector" not in peer and \
            selects(peer.get("namespaceSelector", {}), {"kubernetes.io/metadata.name": other})
    block = peer.get("ipBlock")
    return block is not None and address in ipaddress.ip_network(block["cidr"]) and \
        not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except", []))


def allowed(policies: list[Doc], pod: dict[str, str], direction: str, other: str | dict[str, str], port: int,
            protocol: str = "TCP") -> bool:
    """Whether a flowline pod with labels `pod` may talk to/from `other` (a namespace's pods, a flowline pod's
    labels, or an IP) on `port`. A flow between two flowline pods needs both ends' policies: test each end."""
    field, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in policies:
        spec = policy["spec"]
        if direction not in spec["policyTypes"] or not selects(spec["podSelector"], pod):
            continue
        for rule in spec.get(field, []):
            peer_ok = peers not in rule or any(peer_matches(p, other) for p in rule[peers])
            port_ok = "ports" not in rule or any(
                p["port"] == port and p.get("protocol", "TCP") == protocol for p in rule["ports"])
            if peer_ok and port_ok:
                return True
    return False


MODEL_POD = {"serving.kserve.io/inferenceservice": "churn"}
GRAPH_POD = {"serving.kserve.io/inferencegraph": "churn-ab"}
PIPELINE_POD = {"workflows.argoproj.io/workflow": "churn-x7k2p"}
DEPLOYER_POD = {"flowline.dev/role": "deployer"}
OTHER_POD = {"app": "something-else"}
TRIAL_POD = {"katib.kubeflow.org/trial": "churn-xgboost-hpo-abc12"}
SUGGESTION_POD = {"katib.kubeflow.org/suggestion": "churn-xgboost-hpo"}
API_SERVER = "192.0.2.10"  # the base's placeholder for the API server's address, which overlays replace

FLOWS = [
    # pod, direction, peer namespace, port, allowed
    (OTHER_POD, "Egress", "kube-system", 53, True),
    (OTHER_POD, "Egress", "kubeflow", 9000, False),
    (OTHER_POD, "Ingress", "knative-serving", 8080, False),
    (MODEL_POD, "Ingress", "knative-serving", 8012, True),
    (MODEL_POD, "Ingress", "istio-system", 8080, True),
    (MODEL_POD, "Ingress", "knative-eventing", 8080, True),
    (MODEL_POD, "Ingress", "monitoring", 9091, True),
    (MODEL_POD, "Ingress", "monitoring", 8012, False),
    (MODEL_POD, "Ingress", "default", 8080, False),
    (MODEL_POD, "Egress", "knative-eventing", 8080, True),
    (MODEL_POD, "Egress", "kubeflow", 9000, True),
    (MODEL_POD, "Egress", "kubeflow", 8888, False),
    (MODEL_POD, "Egress", "anywhere", 443, False),
    (GRAPH_POD, "Ingress", "knative-serving", 8012, True),
    (GRAPH_POD, "Egress", "istio-system", 8081, True),
    (PIPELINE_POD, "Egress", "anywhere", 6443, False),
    (PIPELINE_POD, "Egress", "203.0.113.77", 443, False),
    (PIPELINE_POD, "Egress", API_SERVER, 6443, True),
    (PIPELINE_POD, "Egress", API_SERVER, 443, True),
    (PIPELINE_POD, "Egress", API_SERVER, 22, False),
    (PIPELINE_POD, "Egress", "kubeflow", 8887, True),
    (PIPELINE_POD, "Egress", "knative-eventing", 8080, True),
    (PIPELINE_POD, "Ingress", "kubeflow", 8080, False),
    (DEPLOYER_POD, "Egress", "anywhere", 443, False),
    (DEPLOYER_POD, "Egress", API_SERVER, 443, True),
    (MODEL_POD, "Egress", API_SERVER, 443, False),
    (GRAPH_POD, "Egress", API_SERVER, 6443, False),
    (DEPLOYER_POD, "Egress", "kubeflow", 9000, True),
    (DEPLOYER_POD, "Egress", "knative-eventing", 8080, False),
    # Katib with early stopping (medianstop): the controller and the trials reach the suggestion pod's
    # early-stopping service, which reads katib-db-manager and patches Trials through the API server.
    (TRIAL_POD, "Egress", "kubeflow", 6789, True),
    (TRIAL_POD, "Egress", SUGGESTION_POD, 6788, True),
    (TRIAL_POD, "Egress", API_SERVER, 443, False),
    (SUGGESTION_POD, "Ingress", "kubeflow", 6789, True),
    (SUGGESTION_POD, "Ingress", "kubeflow", 6788, True),
    (SUGGESTION_POD, "Ingress", TRIAL_POD, 6788, True),
    (SUGGESTION_POD, "Ingress", MODEL_POD, 6788, False),
    (SUGGESTION_POD, "Ingress", TRIAL_POD, 6789, False),
    (SUGGESTION_POD, "Egress", "kubeflow", 6789, True),
    (SUGGESTION_POD, "Egress", API_SERVER, 443, True),
    (SUGGESTION_POD, "Egress", "kubeflow", 9000, False),
    (MODEL_POD, "Egress", SUGGESTION_POD, 6788, False),
]


@pytest.mark.parametrize(("pod", "direction", "peer", "port", "expected"), FLOWS)
def test_network_policies_allow_only_the_flows_flowline_needs(
        base: list[Doc], pod: dict[str, str], direction: str, peer: str, port: int, expected: bool) -> None:
    assert allowed(find(base, "NetworkPolicy"), pod, direction, peer, port) is expected


def test_dns_is_allowed_over_udp_and_tcp(base: list[Doc]) -> None:
    policies = find(base, "NetworkPolicy")
    for protocol in ("UDP", "TCP"):
        assert allowed(policies, OTHER_POD, "Egress", "kube-system", 53, protocol)


def test_every_pod_is_denied_by_default_and_namespaces_are_matched_by_name(base: list[Doc]) -> None:
    policies = find(base, "NetworkPolicy")
    deny = one(base, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                by_name = "namespaceSelector" in peer and \
                    list(peer["namespaceSelector"]["matchLabels"]) == ["kubernetes.io/metadata.name"]
                assert by_name or list(peer) in (["ipBlock"], ["podSelector"]), peer  # a podSelector: this namespace


def open_rules(policy: Doc) -> list[str]:
    """The rules of a policy that reach too far: no peers at all (any destination or source), or an ipBlock
    wider than 256 addresses (0.0.0.0/0 included)."""
    found = []
    for field, peers in (("ingress", "from"), ("egress", "to")):
        for number, rule in enumerate(policy["spec"].get(field, [])):
            if not rule.get(peers):
                found.append(f"{field}[{number}]: any peer")
            for peer in rule.get(peers, []):
                if "ipBlock" in peer and ipaddress.ip_network(peer["ipBlock"]["cidr"]).num_addresses > 256:
                    found.append(f"{field}[{number}]: {peer['ipBlock']['cidr']}")
    return found


@pytest.mark.parametrize("target", TARGETS)
def test_no_policy_opens_a_port_to_any_destination(target: str) -> None:
    """Egress on 443 and 6443 reaches only the API server; every other rule names its peers too."""
    policies = find(render(target), "NetworkPolicy")
    assert {p["metadata"]["name"]: found for p in policies if (found := open_rules(p))} == {}
    to_api = [rule for p in policies for rule in p["spec"].get("egress", [])
              if {port["port"] for port in rule.get("ports", [])} & {443, 6443}]
    assert len(to_api) == 3  # pipeline pods, the deployer and Katib's early-stopping service
    assert all(list(peer) == ["ipBlock"] for rule in to_api for peer in rule["to"])


def test_the_open_rule_check_can_fail(base: list[Doc]) -> None:
    policy = one(base, "NetworkPolicy", "allow-deployer-egress")
    assert open_rules(policy) == []
    del policy["spec"]["egress"][0]["to"]
    policy["spec"]["egress"][1]["to"].append({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}})
    assert open_rules(policy) == ["egress[0]: any peer", "egress[1]: 0.0.0.0/0"]


# The API server's address in each overlay: placeholders (documentation addresses, except kind's default
# control plane in dev) that a cluster's own overlay replaces.
API_SERVERS = {"base": "192.0.2.10/32", "overlays/dev": "172.18.0.2/32", "overlays/staging": "198.51.100.10/32",
               "overlays/prod": "203.0.113.10/32"}


@pytest.mark.parametrize("target", TARGETS)
def test_each_overlay_sets_the_api_server_address_for_the_pods_that_reach_it(target: str) -> None:
    labelled = [p for p in find(render(target), "NetworkPolicy")
                if p["metadata"]["labels"].get("flowline.dev/egress") == "api-server"]
    assert {p["metadata"]["name"] for p in labelled} == {"allow-pipeline-egress", "allow-deployer-egress",
                                                         "allow-katib-suggestion-egress"}
    for policy in labelled:
        assert policy["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": API_SERVERS[target]}}]
        assert {port["port"] for port in policy["spec"]["egress"][0]["ports"]} == {443, 6443}
