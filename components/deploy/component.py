"""KFP components: deploy a package as an InferenceService, and promote or roll back its canary."""

from kfp.dsl import Artifact, Input, Model, Output

from flowline.components import flowline_component


@flowline_component
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

    from flowline.components.deploy.cluster import IN_CLUSTER_ENV
    from flowline.components.deploy.deployment import deploy_package
    from flowline.components.deploy.inference_service import storage_uri_of

    outcome = deploy_package(
        model_package.path, storage_uri_of(model_package.uri), namespace, manifest.path,
        apply_to_cluster=bool(os.environ.get(IN_CLUSTER_ENV)), canary_percent=canary_percent, audit_log=audit_log,
    )
    manifest.metadata.update(outcome)


@flowline_component
def canary(name: str, namespace: str, operation: str):
    """`promote` gives the canary all traffic; `rollback` gives it none. Runs inside the cluster."""
    from flowline.components.deploy.cluster import promote, rollback

    if operation not in ("promote", "rollback"):
        raise ValueError(f"operation must be 'promote' or 'rollback', got {operation!r}")
    (promote if operation == "promote" else rollback)(name, namespace)
    print(f"canary: {operation} {namespace}/{name}")
