"""What each overlay changes: image tag, replicas and autoscaling, canary, resources."""

from __future__ import annotations

import pytest

from flowline.pipelines.use_case import built_in_use_cases

from manifest_helpers import IMAGE, TARGETS, Doc, containers, find, render

TAGS = {"base": "0.1.0", "overlays/dev": "0.1.0-dev", "overlays/staging": "0.1.0-rc", "overlays/prod": "0.1.0"}
# (minReplicas, maxReplicas, scaleTarget) of every model server
SCALING = {"base": (1, 3, 10), "overlays/dev": (0, 1, 5), "overlays/staging": (1, 4, 10), "overlays/prod": (2, 10, 20)}
CANARY = {"base": None, "overlays/dev": None, "overlays/staging": 50, "overlays/prod": 10}


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


@pytest.mark.parametrize("target", TARGETS)
def test_every_image_carries_the_overlay_tag_including_serving_runtimes(target: str) -> None:
    docs = render(target)
    images = {c["image"] for doc in docs for _, c in containers(doc) if "image" in c}
    assert images == {f"{IMAGE}:{TAGS[target]}"}
    runtime_images = {c["image"] for r in find(docs, "ServingRuntime") for c in r["spec"]["containers"]}
    assert runtime_images == {f"{IMAGE}:{TAGS[target]}"}


@pytest.mark.parametrize("target", TARGETS)
def test_model_replicas_and_autoscaling_follow_the_overlay(target: str) -> None:
    served = models(render(target))
    assert len(served) == len(built_in_use_cases()) + 1  # one per use case, and churn's challenger
    for service in served:
        predictor = service["spec"]["predictor"]
        assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleTarget"]) == SCALING[target]


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
    """Beyond the model servers and the image, an overlay renders the same objects as the base."""
    def rest(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
        kept = {}
        for doc in docs:
            if doc["kind"] == "InferenceService" and doc["metadata"]["labels"]["flowline.dev/component"] == "model":
                continue
            for _, container in containers(doc):
                container.pop("image", None)
            kept[(doc["kind"], doc["metadata"]["name"])] = doc
        return kept

    assert rest(render(target)) == rest(render("base"))
