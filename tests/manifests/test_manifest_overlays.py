"""What each overlay changes: image tag and digest, replicas and autoscaling, canary, resources, the API
server's address."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flowline.use_case_loader import built_in_use_cases

from manifest_helpers import IMAGE, KUSTOMIZE, TARGETS, Doc, containers, find, kustomize, render

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64  # prod's, until the release sets the pushed image's digest
IMAGES = {"base": f"{IMAGE}:0.1.0", "overlays/dev": f"{IMAGE}:0.1.0-dev", "overlays/staging": f"{IMAGE}:0.1.0-rc",
          "overlays/prod": f"{IMAGE}:0.1.0@{PLACEHOLDER_DIGEST}"}
PINNED = re.compile(rf"{re.escape(IMAGE)}(:[\w.-]+)?@sha256:[0-9a-f]{{64}}")
# (minReplicas, maxReplicas, scaleTarget) of every model server
SCALING = {"base": (1, 3, 10), "overlays/dev": (0, 1, 5), "overlays/staging": (1, 4, 10), "overlays/prod": (2, 10, 20)}
CANARY = {"base": None, "overlays/dev": None, "overlays/staging": 50, "overlays/prod": 10}
# `flowline serve` starts one worker per CPU of the container's limit. A worker's memory budget: 288 MiB measured
# serving churn after 400 requests, with room for a reload (two versions loaded for a moment) and full batches.
# Beside two or more workers, the supervisor (16 MiB) and multiprocessing's resource tracker (13 MiB).
WORKER_MIB, SUPERVISOR_MIB = 512, 64
CONCURRENCY_PER_WORKER = 10  # Knative's in-flight requests per replica, per worker: ~10 queued requests of ~1 ms


def services(docs: list[Doc], component: str) -> list[Doc]:
    """InferenceServices of one component: `model` or `drift-monitor`."""
    return [s for s in find(docs, "InferenceService") if s["metadata"]["labels"]["flowline.dev/component"] == component]


def models(docs: list[Doc]) -> list[Doc]:
    return services(docs, "model")


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_mib(quantity: str) -> float:
    units = {"Mi": 1, "Gi": 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def images(docs: list[Doc]) -> dict[str, str]:
    """where -> image of every container that names one."""
    return {where: c["image"] for doc in docs for where, c in containers(doc) if "image" in c}


@pytest.mark.parametrize("target", TARGETS)
def test_every_image_carries_the_overlay_tag_including_serving_runtimes(target: str) -> None:
    docs = render(target)
    assert set(images(docs).values()) == {IMAGES[target]}
    runtime_images = {c["image"] for r in find(docs, "ServingRuntime") for c in r["spec"]["containers"]}
    assert runtime_images == {IMAGES[target]}


def test_prod_pins_every_flowline_container_by_digest() -> None:
    found = images(render("overlays/prod"))
    assert len(found) >= 2  # the two serving runtimes: every model server and drift monitor runs one
    assert {where: image for where, image in found.items() if not PINNED.fullmatch(image)} == {}


def test_any_overlay_can_pin_the_image_by_digest(tmp_path: Path) -> None:
    """What a release does to an overlay: kustomize's `images:` with a digest pins every flowline container."""
    digest = "sha256:" + "5e" * 32
    staging = os.path.relpath(KUSTOMIZE / "overlays/staging", tmp_path)  # kustomize refuses absolute paths
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{staging}]\nimages:\n  - name: {IMAGE}\n    digest: {digest}\n")
    found = images(kustomize(tmp_path))
    assert found and set(found.values()) == {f"{IMAGE}@{digest}"}  # a digest alone replaces the tag
    assert all(PINNED.fullmatch(image) for image in found.values())
    assert not PINNED.fullmatch(IMAGES["overlays/staging"])  # the check fails on a tag alone


@pytest.mark.parametrize("target", TARGETS)
def test_model_replicas_and_autoscaling_follow_the_overlay(target: str) -> None:
    served = models(render(target))
    assert len(served) == len(built_in_use_cases()) + 1  # one per use case, and churn's challenger
    for service in served:
        predictor = service["spec"]["predictor"]
        assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleTarget"]) == SCALING[target]


@pytest.mark.parametrize("target", TARGETS)
def test_drift_monitors_get_whole_cpus_and_memory_for_their_workers(target: str) -> None:
    """The flowline-drift runtime starts `--workers 0`: one worker (one window) per CPU of the limit."""
    runtime = next(r for r in find(render(target), "ServingRuntime") if r["metadata"]["name"] == "flowline-drift")
    args = runtime["spec"]["containers"][0]["args"]
    assert args[args.index("--workers") + 1] == "0"
    for service in services(render(target), "drift-monitor"):
        limits = service["spec"]["predictor"]["model"]["resources"]["limits"]
        cpus = cpu_cores(limits["cpu"])
        assert cpus >= 1 and cpus.is_integer(), (service["metadata"]["name"], cpus)
        workers = int(cpus)
        assert memory_mib(limits["memory"]) >= workers * WORKER_MIB + (SUPERVISOR_MIB if workers > 1 else 0)


@pytest.mark.parametrize("target", TARGETS)
def test_model_servers_get_whole_cpus_memory_and_a_concurrency_target_for_their_workers(target: str) -> None:
    for service in models(render(target)):
        predictor, name = service["spec"]["predictor"], service["metadata"]["name"]
        limits = predictor["model"]["resources"]["limits"]
        cpus = cpu_cores(limits["cpu"])
        assert cpus >= 1 and cpus.is_integer(), (name, cpus)  # a fraction would round up: workers sharing a CPU
        workers = int(cpus)
        assert memory_mib(limits["memory"]) >= workers * WORKER_MIB + (SUPERVISOR_MIB if workers > 1 else 0), name
        assert predictor["scaleTarget"] <= CONCURRENCY_PER_WORKER * workers, name


@pytest.mark.parametrize("target", TARGETS)
def test_drift_monitors_keep_exactly_one_replica_everywhere(target: str) -> None:
    monitors = services(render(target), "drift-monitor")
    assert len(monitors) == len(built_in_use_cases())
    for monitor in monitors:
        assert (monitor["spec"]["predictor"]["minReplicas"], monitor["spec"]["predictor"]["maxReplicas"]) == (1, 1)


@pytest.mark.parametrize("target", TARGETS)
def test_only_churn_gets_a_canary_and_only_in_staging_and_prod(target: str) -> None:
    canaries = {
        s["metadata"]["name"]: s["spec"]["predictor"]["canaryTrafficPercent"]
        for s in find(render(target), "InferenceService") if "canaryTrafficPercent" in s["spec"]["predictor"]
    }
    assert canaries == ({} if CANARY[target] is None else {"churn": CANARY[target]})


def test_prod_model_servers_get_more_cpu_and_memory_than_dev() -> None:
    def sizes(target: str) -> dict[str, tuple[float, float, float, float]]:
        result = {}
        for service in models(render(target)):
            resources = service["spec"]["predictor"]["model"]["resources"]
            result[service["metadata"]["name"]] = (
                cpu_cores(resources["requests"]["cpu"]), memory_mib(resources["requests"]["memory"]),
                cpu_cores(resources["limits"]["cpu"]), memory_mib(resources["limits"]["memory"]))
        return result

    dev, prod = sizes("overlays/dev"), sizes("overlays/prod")
    assert dev.keys() == prod.keys()
    for name in dev:
        assert all(p > d for p, d in zip(prod[name], dev[name])), name
        requests_cpu, requests_memory, limits_cpu, limits_memory = prod[name]
        assert requests_cpu <= limits_cpu and requests_memory <= limits_memory


@pytest.mark.parametrize("target", TARGETS[1:])
def test_overlays_change_only_what_they_mean_to(target: str) -> None:
    """Beyond the model servers, the image, the API server's address, the drift monitors' resources (their
    workers follow the CPU limit, checked above) and dev's severities of FlowlineNoModelServing and
    FlowlineModelDown (below), an overlay renders the same objects as the base."""
    def rest(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
        kept = {}
        for doc in docs:
            if doc["kind"] == "PrometheusRule":
                for rule in (rule for group in doc["spec"]["groups"] for rule in group["rules"]):
                    if rule.get("alert") in SCALE_TO_ZERO_ALERTS:
                        del rule["labels"]["severity"]
            if doc["kind"] == "InferenceService" and doc["metadata"]["labels"]["flowline.dev/component"] == "model":
                continue
            if doc["kind"] == "InferenceService":  # a drift monitor
                del doc["spec"]["predictor"]["model"]["resources"]
            if doc["metadata"].get("labels", {}).get("flowline.dev/egress") == "api-server":
                del doc["spec"]["egress"][0]["to"]  # checked in test_manifest_wiring
            for _, container in containers(doc):
                container.pop("image", None)
            kept[(doc["kind"], doc["metadata"]["name"])] = doc
        return kept

    assert rest(render(target)) == rest(render("base"))


SCALE_TO_ZERO_ALERTS = ("FlowlineNoModelServing", "FlowlineModelDown")


@pytest.mark.parametrize("target", TARGETS)
def test_models_not_scraped_are_only_info_where_models_scale_to_zero(target: str) -> None:
    """dev's model servers scale to zero when idle, so no model scraped is no emergency there."""
    (rules,) = find(render(target), "PrometheusRule")
    alerts = [rule for group in rules["spec"]["groups"] for rule in group["rules"]
              if rule.get("alert") in SCALE_TO_ZERO_ALERTS]
    models = [doc for doc in find(render(target), "InferenceService")
              if doc["metadata"]["labels"]["flowline.dev/component"] == "model"]
    scales_to_zero = all(doc["spec"]["predictor"]["minReplicas"] == 0 for doc in models)
    assert [alert["labels"]["severity"] for alert in alerts] == ["info" if scales_to_zero else "critical"] * 2
    assert scales_to_zero == (target == "overlays/dev")


@pytest.mark.parametrize("target", TARGETS)
def test_every_model_server_has_a_disruption_budget_that_evicts_one_pod_at_a_time(target: str) -> None:
    """A drain takes one predictor pod of a model at a time (prod's two replicas are never both gone), and
    never blocks on a model at one replica or none (maxUnavailable, not minAvailable)."""
    docs = render(target)
    budgets = {doc["spec"]["selector"]["matchLabels"]["serving.kserve.io/inferenceservice"]: doc["spec"]
               for doc in docs if doc["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {service["metadata"]["name"] for service in models(docs)}
    for name, spec in budgets.items():
        assert spec == {"maxUnavailable": 1, "selector": {"matchLabels": {
            "serving.kserve.io/inferenceservice": name, "component": "predictor"}}}, name
