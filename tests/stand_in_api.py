"""A stand-in Kubernetes (or KFP) API server on loopback: records every request, answers as it is told.

Cluster clients (the kubernetes client, KServe's and Katib's SDKs, kfp.Client) are real code;
this lets tests check them up to the requests they send.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Callable, Optional

import yaml

Respond = Callable[[str, str, Optional[dict]], tuple[int, dict]]


class StandInApiServer:
    """`respond(method, path, body)` gives (status, answer) for each request."""

    def __init__(self, respond: Respond) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                outer.requests.append({"method": self.command, "path": self.path,
                                       "content_type": self.headers.get("Content-Type"), "body": body,
                                       "authorization": self.headers.get("Authorization")})
                status, answer = respond(self.command, self.path, body)
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kubeconfig(self, folder: Path) -> str:
        return kubeconfig(f"http://127.0.0.1:{self.server.server_port}", folder)


def kubeconfig(server: str, folder: Path) -> str:
    """A kubeconfig file in `folder` for the API server at `server`, with a bearer token."""
    path = folder / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "flowline"}}],
    }))
    return str(path)


def refusing(status: int) -> Respond:
    """Answers every request as an API server that does not accept the credentials: 401 or 403."""
    reason = {401: "Unauthorized", 403: "Forbidden"}[status]
    return lambda method, path, body: (status, {"kind": "Status", "code": status, "reason": reason})


def unreachable_or_refusing(status: int | None, folder: Path) -> tuple[str, str, StandInApiServer | None]:
    """A Kubernetes API that fails: with `status` None, nothing listens at its address (a closed
    port); else a stand-in answering every request with `status` (401 or 403). Returns its URL, a
    kubeconfig for it in `folder`, and the stand-in server (None for the closed port), which must
    stay referenced while it is used."""
    if status is None:
        from flowline.inference_services.local_server import free_port

        url = f"http://127.0.0.1:{free_port()}"
        return url, kubeconfig(url, folder), None
    api = StandInApiServer(refusing(status))
    return f"http://127.0.0.1:{api.server.server_port}", api.kubeconfig(folder), api


NOT_FOUND = (404, {"kind": "Status", "code": 404, "reason": "NotFound"})
KFP_API = "/apis/v2beta1"


def cluster_with(*services: dict, stored: dict[str, dict] | None = None) -> Respond:
    """Answers like the API server for these InferenceServices (by name): GET finds them and those POSTed since
    (kept in `stored`, when given, for the test to read), PATCH echoes."""
    by_name = stored if stored is not None else {}
    by_name.update({service["metadata"]["name"]: service for service in services})

    def respond(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        if method == "POST":
            by_name[body["metadata"]["name"]] = body
        if method == "GET":
            found = by_name.get(path.rsplit("/", 1)[-1])
            return (200, found) if found else NOT_FOUND
        return 200, body

    return respond


def kfp_api(existing_experiments: list[dict], run_states: dict[str, str] | None = None,
            recurring_runs: list[dict] | None = None):
    """Answers as the KFP API server would, for a deployment with these experiments (and runs in these states, and
    these recurring runs, which a DELETE removes)."""
    schedules = recurring_runs if recurring_runs is not None else []

    def respond(method: str, path: str, body):
        route = path.split("?")[0]
        if (method, route) == ("GET", f"{KFP_API}/recurringruns"):
            return 200, {"recurringRuns": schedules, "total_size": len(schedules)}
        if method == "DELETE" and route.startswith(f"{KFP_API}/recurringruns/"):
            schedules[:] = [run for run in schedules if run["recurring_run_id"] != route.rsplit("/", 1)[-1]]
            return 200, {}
        if method == "GET" and route.startswith(f"{KFP_API}/runs/") and route.rsplit("/", 1)[-1] in (run_states or {}):
            run_id = route.rsplit("/", 1)[-1]
            return 200, {"run_id": run_id, "state": run_states[run_id]}
        if route == f"{KFP_API}/healthz":
            return 200, {"multi_user": False}
        if (method, route) == ("GET", f"{KFP_API}/experiments"):
            return 200, {"experiments": existing_experiments, "total_size": len(existing_experiments)}
        if (method, route) == ("POST", f"{KFP_API}/experiments"):
            return 200, {"experiment_id": "exp-new", "display_name": body["display_name"]}
        if (method, route) == ("POST", f"{KFP_API}/runs"):
            return 200, {"run_id": "run-1", **body}
        if (method, route) == ("POST", f"{KFP_API}/recurringruns"):
            return 200, {"recurring_run_id": "rr-1", **body}
        return 404, {"error": f"no route {method} {route}"}
    return respond


def experiment_server(optimal: dict | None, succeeded: bool = True, trials: tuple[dict, ...] = (),
                      running: bool = False):
    """Answers like the API server with Katib installed: stores the Experiment, reports it finished (still
    running with `running`), and lists `trials` as its Trials."""
    stored: dict = {}

    def respond(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        if method == "POST":
            stored.update(body)
            return 201, body
        if path.split("?")[0].endswith("/trials"):
            return 200, {"apiVersion": "kubeflow.org/v1beta1", "kind": "TrialList", "items": list(trials)}
        state = "Running" if running else "Succeeded" if succeeded else "Failed"
        condition = {"type": state, "status": "True", "reason": f"Experiment{state}"}
        status = {"conditions": [condition], "trials": 7, "trialsSucceeded": 5, "trialsEarlyStopped": 2}
        if optimal:
            status["currentOptimalTrial"] = optimal
        return 200, {**stored, "status": status}

    return StandInApiServer(respond)


# A Katib optimal trial of churn's linear family, as the Experiment's status gives it.
OPTIMAL = {
    "bestTrialName": "churn-linear-hpo-abc123-x7",
    "parameterAssignments": [{"name": "C", "value": "0.05"}, {"name": "l1_ratio", "value": "1.0"},
                             {"name": "class_weight", "value": "balanced"}],
    "observation": {"metrics": [{"name": "valid_roc_auc", "latest": "0.8512", "max": "0.8512", "min": "0.8"},
                                {"name": "iterations", "latest": "1", "max": "1", "min": "1"}]},
}


def katib_trial(name: str, assignments: dict, metrics: dict, state: str = "Succeeded") -> dict:
    """A Trial object as Katib stores it: its parameter assignments, its observed metrics, its final condition."""
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Trial", "metadata": {"name": name, "namespace": "flowline"},
        "spec": {"parameterAssignments": [{"name": k, "value": v} for k, v in assignments.items()]},
        "status": {"conditions": [{"type": state, "status": "True"}],
                   "observation": {"metrics": [{"name": k, "latest": v, "max": v, "min": v}
                                               for k, v in metrics.items()]}},
    }
