"""Starting KServe's ModelServer for flowline packages, on a chosen host, hardened against bad input.

What this adds to kserve.ModelServer:
- the bind host is configurable (KServe 0.15 hard-codes 0.0.0.0): 127.0.0.1 by default;
- a body that cannot be decoded is a 400, whatever the decoder raised, never a 500;
- v2 schema errors are 400s naming the field (FastAPI's default is 422), and refused
  requests are logged as one line, not as an ERROR with a traceback;
- `POST /v2/repository/models/{name}/load` reloads that model's package without
  dropping requests; a package that fails verification is refused with 409 and the
  running version keeps serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from kserve.model_server import FASTAPI_APP_IMPORT_STRING, ModelServer
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer

from flowline.components.package.model_package import PackageError
from flowline.inference_services import metrics
from flowline.inference_services.model import FlowlineModel
from flowline.inference_services.options import DEFAULT_MAX_BATCH, DEFAULT_PORT, default_host
from flowline.inference_services.request_checks import BadRequest

log = logging.getLogger("flowline.serving")


def serve(
    packages: Sequence[tuple[str, str | Path]],
    host: str | None = None,
    port: int = DEFAULT_PORT,
    max_batch: int = DEFAULT_MAX_BATCH,
    access_log: bool = False,
) -> None:
    """Serve each (name, package folder) in one process until interrupted."""
    models = [FlowlineModel(name, path, max_batch) for name, path in packages]
    for model in models:
        model.load()
    # Everything loaded now lives until exit: keep the collector from scanning it (GC pauses).
    gc.collect()
    gc.freeze()
    server = FlowlineModelServer(host or default_host(), access_log, http_port=port, enable_grpc=False,
                                 enable_latency_logging=False)
    server.start(models)


class FlowlineDataPlane(DataPlane):
    """KServe's DataPlane, but any failure to decode a client's body is a 400, never a 500."""

    def decode(self, *args, **kwargs):
        try:
            return super().decode(*args, **kwargs)
        except BadRequest:
            raise
        except Exception as error:  # parsing client bytes: every failure here is the client's
            raise BadRequest("malformed_request", f"body: cannot decode the request: {error}") from None


async def _refused(request: Request, error: InvalidInput) -> JSONResponse:
    log.info("400 %s %s: %s", request.method, request.url.path, error)
    return JSONResponse(status_code=400, content={"error": str(error)})


def _describe(item: dict) -> str:
    where = [str(part) for part in item["loc"] if part != "body"]
    if item["type"] == "json_invalid":
        return f"malformed JSON at character {where[-1] if where else '?'}: {item['ctx'].get('error', item['msg'])}"
    return f"{'.'.join(where) or 'body'}: {item['msg']}"


async def _schema_error(request: Request, error: RequestValidationError) -> JSONResponse:
    # v2 bodies parse as InferenceRequest or raw bytes; the bytes branch's complaints say nothing useful.
    items = [i for i in error.errors() if i["loc"][1:2] != ("bytes",)] or error.errors()
    metrics.INVALID_INPUTS.labels(request.path_params.get("model_name", ""), "malformed_request").inc()
    return await _refused(request, InvalidInput("invalid request: " + "; ".join(map(_describe, items))))


class FlowlineRESTServer(RESTServer):
    def __init__(self, *args, models: dict[str, FlowlineModel], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.models = models

    def _register_endpoints(self, app: FastAPI) -> None:
        # Registered first, so it answers instead of KServe's generic repository load.
        app.add_api_route("/v2/repository/models/{model_name}/load", self.reload, methods=["POST"])
        super()._register_endpoints(app)

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, _refused)
        app.add_exception_handler(RequestValidationError, _schema_error)

    async def reload(self, model_name: str) -> JSONResponse:
        """Load the model's package again from its path; refuse it if it fails verification."""
        model = self.models.get(model_name)
        if model is None:
            return JSONResponse(status_code=404, content={"error": f"model {model_name!r} is not served here"})
        try:
            version = await asyncio.to_thread(model.reload)
        except (PackageError, OSError, ValueError) as error:
            log.warning("refused a new package for %s: %s", model_name, error)
            return JSONResponse(status_code=409, content={
                "error": f"package refused, still serving version {model.package.version}: {error}"})
        log.info("%s now serves version %s", model_name, version)
        return JSONResponse(content={"name": model_name, "load": True, "version": version})


class FlowlineModelServer(ModelServer):
    """kserve.ModelServer bound to `host`, with flowline's error handling and reload route."""

    def __init__(self, host: str, access_log: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.access_log = access_log
        self.dataplane = FlowlineDataPlane(
            model_registry=self.registered_models, predictor_config=self.dataplane.predictor_config
        )

    def start(self, models: list[FlowlineModel]) -> None:
        """ModelServer.start for one REST process, bound to `host` rather than 0.0.0.0."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = FlowlineRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            grace_period=self.grace_period, models={m.name: m for m in models},
        )
        self._rest_server.config.host = self.host
        if not self.access_log:  # per-request log lines cost more than the prediction
            access = logging.getLogger("uvicorn.access")
            access.handlers, access.propagate = [], False
            logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        self.servers.append(self._rest_server.start())
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())
