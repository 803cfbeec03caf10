"""Deploying a model package: render its InferenceService, and apply it when a cluster is at hand."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import yaml

from flowline import audit
from flowline.cluster import apply, follow_served_package
from flowline.inference_service import inference_service
from flowline.package.format import Package


def deploy_package(
    package_dir: str,
    storage_uri: str,
    namespace: str,
    manifest_file: str,
    apply_to_cluster: bool,
    canary_percent: int = 10,
    name: Optional[str] = None,
    kubeconfig: Optional[str] = None,
    audit_log: str = "",
) -> dict:
    """Write the package's InferenceService to `manifest_file`; apply it if asked, its gates passed and
    the champion/challenger decision is to promote it. With `audit_log` (a file, or s3://bucket/prefix
    on a cluster) the outcome is recorded there as a deployment.

    Returns what happened: {"name", "manifest", "applied", "action", "drift_monitor"}, the last saying where a new
    service's drift monitor now points ("" when nothing was created).
    """
    package = Package.open(package_dir)
    name = name or package.manifest["name"]
    service = inference_service(name, storage_uri, namespace=namespace)
    Path(manifest_file).write_text(yaml.safe_dump(service, sort_keys=False))
    evaluation = package.evaluation
    decision = evaluation["champion_challenger"]
    if not evaluation["gates_passed"]:
        action, applied = f"not applied: the package failed {failed_gates_text(evaluation)}", False
    elif decision["decision"] != "promote":
        action, applied = f"not applied: the champion stays ({decision['reason']})", False
    elif not apply_to_cluster:
        action, applied = "manifest written, no cluster to apply it to", False
    else:
        action, applied = apply(service, namespace, kubeconfig, canary_percent), True
    # A new service serves its first version to all traffic at once, so its drift monitor follows now (and on a
    # retry that finds it so: "unchanged"); a canary's monitor follows when the canary is promoted (flowline.canary).
    drift_monitor = follow_served_package(name, namespace, kubeconfig) if action in ("created", "unchanged") else ""
    print(f"deploy: {name} ({package.version}) from {storage_uri}: {action}"
          f"{f'; {drift_monitor}' if drift_monitor else ''}; manifest {manifest_file}")
    if audit_log:
        audit.append(audit_log, "deployment", {
            "use_case": package.manifest["name"], "package_version": package.version, "inference_service": name,
            "namespace": namespace, "storage_uri": storage_uri, "applied": applied, "action": action,
            "drift_monitor": drift_monitor, "gates_passed": evaluation["gates_passed"],
            "decision": decision["decision"]})
    return {"name": name, "manifest": manifest_file, "applied": applied, "action": action,
            "drift_monitor": drift_monitor}


def failed_gates_text(evaluation: dict) -> str:
    """The gates a package failed, by kind: the dashboard's deploy step named neither which nor what kind."""
    quality = [name for name, gate in evaluation.get("gates", {}).items() if not gate["passed"]]
    fairness = [attribute for attribute, result in evaluation.get("fairness", {}).get("attributes", {}).items()
                if result.get("gate") != "pass"]
    said = ([f"its quality gates ({', '.join(quality)})"] if quality else []) + \
        ([f"its fairness gates ({', '.join(fairness)})"] if fairness else [])
    return " and ".join(said) or "its gates"
