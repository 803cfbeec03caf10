"""KFP components: deploy a package as an InferenceService, and judge its canary (promote, hold or roll back)."""

from kfp.dsl import Artifact, Input, Metrics, Model, Output


def deploy(
    model_package: Input[Model],
    namespace: str,
    canary_percent: int,
    audit_log: str,
    manifest: Output[Artifact],
):
    """Render the InferenceService for the package; inside a cluster, apply it (as a canary when a
    champion is serving). Under kfp.local it only writes the manifest. Failed gates are never applied.
    With `audit_log` (s3://bucket/prefix on a cluster) the outcome is recorded in the audit trail."""
    import os

    from flowline.cluster import IN_CLUSTER_ENV
    from flowline.deployment import deploy_package
    from flowline.storage import artifact_object_uri

    outcome = deploy_package(
        model_package.path, artifact_object_uri(model_package.uri), namespace, manifest.path,
        apply_to_cluster=bool(os.environ.get(IN_CLUSTER_ENV)), canary_percent=canary_percent, audit_log=audit_log,
    )
    manifest.metadata.update(outcome)


def canary(
    name: str,
    namespace: str,
    prometheus_url: str,
    predictions: str,
    outcomes: str,
    audit_log: str,
    apply: bool,
    decision: Output[Metrics],
    policy: dict = {},
    value_per_success: float = 0.0,
):
    """The canary controller: read the champion's and the canary's numbers (from Prometheus at
    `prometheus_url`, else from the `predictions` log and `outcomes` files), decide promote, hold or
    roll back (guardrails, then the sequential test; `policy` overrides CanaryPolicy's fields), and
    record the decision in `audit_log`, with the business impact when `value_per_success` is set.
    With `apply`, inside a cluster, patch the InferenceService. Run it on a schedule: every
    decision stays valid however often it is taken."""
    import os

    from flowline.ab_testing import CanaryPolicy
    from flowline.canary import judge_canary, read_arms
    from flowline.cluster import IN_CLUSTER_ENV

    arms, source = read_arms(prometheus_url, name, predictions, outcomes, namespace)
    decided = judge_canary(arms, CanaryPolicy(**policy), audit_log, name, namespace,
                           apply=apply and bool(os.environ.get(IN_CLUSTER_ENV)), source=source,
                           value_per_success=value_per_success)
    for key, value in decided.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            decision.log_metric(key, value)
    decision.metadata.update({"decision": decided["decision"], "reason": decided["reason"],
                              "applied": decided["applied"]})
    print(f"canary {namespace}/{name}: {decided['decision']}{' (applied)' if decided['applied'] else ''}: "
          f"{decided['reason']}")
