"""A stand-in Kubernetes API server on loopback: records every request, answers as it is told.

Cluster clients (the kubernetes client, KServe's and Katib's SDKs) are real code; this
lets tests check them up to the requests they send.
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
                                       "content_type": self.headers.get("Content-Type"), "body": body})
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
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{self.server.server_port}"}}],
            "users": [{"name": "test", "user": {"token": "not-a-secret"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "flowline"}}],
        }))
        return str(path)


NOT_FOUND = (404, {"kind": "Status", "code": 404, "reason": "NotFound"})
