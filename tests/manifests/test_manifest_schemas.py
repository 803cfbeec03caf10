"""Every kustomization renders, and every object it renders is valid against a real schema."""

from __future__ import annotations

import kubernetes_validate
import pytest

from manifest_helpers import (
    CRD_FILES, KUBERNETES_VERSIONS, NAMESPACE, TARGETS, crd_errors, find, group_of, is_core, one, render,
)


@pytest.mark.parametrize("target", TARGETS)
def test_renders_into_the_flowline_namespace_with_the_common_label(target: str) -> None:
    docs = render(target)
    assert docs, f"{target} rendered nothing"
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "flowline", where
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == NAMESPACE
        else:
            assert doc["metadata"].get("namespace") == NAMESPACE, where


@pytest.mark.parametrize("target", TARGETS)
def test_every_rendered_kind_has_a_schema_here(target: str) -> None:
    """Nothing escapes validation: each kind is core or has its upstream CRD in CRD_FILES."""
    unknown = {(group_of(d), d["kind"]) for d in render(target) if not is_core(d)} - set(CRD_FILES)
    assert not unknown, f"no schema to validate {sorted(unknown)}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_core_kinds_pass_kubernetes_validate_strict(target: str, version: str) -> None:
    core = [d for d in render(target) if is_core(d)]
    assert core
    for doc in core:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.absolute_path))
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} at {path}: {error.message}")


@pytest.mark.parametrize("target", TARGETS)
def test_custom_resources_match_the_upstream_crd_schemas_with_unknown_fields_rejected(target: str) -> None:
    custom = [d for d in render(target) if not is_core(d)]
    assert {d["kind"] for d in custom} >= {"InferenceService", "InferenceGraph", "ServingRuntime", "Broker", "Trigger"}
    problems = {f"{d['kind']}/{d['metadata']['name']}": crd_errors(d) for d in custom}
    assert not {k: v for k, v in problems.items() if v}


def test_the_crd_check_can_fail() -> None:
    """An unknown field, a misspelt metadata key, a bad enum value and a wrong type are all caught."""
    churn = one(render("base"), "InferenceService", "churn")
    assert crd_errors(churn) == []

    churn["spec"]["predictor"]["bogus"] = True
    churn["metadata"]["label"] = {"a": "b"}
    churn["spec"]["predictor"]["scaleMetric"] = "latency"
    churn["spec"]["predictor"]["minReplicas"] = "one"
    errors = "\n".join(crd_errors(churn))
    assert "spec.predictor: Additional properties are not allowed ('bogus' was unexpected)" in errors
    assert "metadata: Additional properties are not allowed ('label' was unexpected)" in errors
    assert "spec.predictor.scaleMetric: 'latency' is not one of" in errors
    assert "spec.predictor.minReplicas: 'one' is not of type 'integer'" in errors


def test_an_unknown_trigger_field_is_caught_but_free_filter_attributes_are_not() -> None:
    """Where the CRD preserves unknown fields (filter attributes), any key is allowed, as upstream."""
    trigger = one(render("base"), "Trigger", "churn-drift")
    trigger["spec"]["filter"]["attributes"]["anything"] = "goes"
    assert crd_errors(trigger) == []
    trigger["spec"]["subscriber"]["url"] = "http://typo"
    assert crd_errors(trigger) == ["spec.subscriber: Additional properties are not allowed ('url' was unexpected)"]


def test_kubernetes_validate_strict_can_fail() -> None:
    policy = find(render("base"), "NetworkPolicy")[0]
    policy["spec"]["podSelectors"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, KUBERNETES_VERSIONS[0], strict=True)
