"""Starting KServe's ModelServer for flowline packages, on a chosen host, hardened against bad input.

What this adds to kserve.ModelServer:
- the bind host is configurable (KServe 0.15 hard-codes 0.0.0.0): 127.0.0.1 by default;
- a body that cannot be decoded is a 400, whatever the decoder raised, never a 500;
- v2 infer parses bytes straight into KServe's InferRequest (no pydantic round trips),
  with schema errors as 400s naming the field; refused requests are logged as one
  line, not as an ERROR with a traceback;
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

import uvloop
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.model_server import FASTAPI_APP_IMPORT_STRING, ModelServer
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.server import RESTServer

from flowline.components.package.model_package import PackageError
from flowline.inference_services import metrics
from flowline.inference_services.options import DEFAULT_PORT, default_host
from flowline.inference_services.request_checks import BadRequest

log = logging.getLogger("flowline.serving")


def serve(models: Sequence[Model], host: str | None = None, port: int = DEFAULT_PORT, access_log: bool = False) -> None:
    """Load each model (a FlowlineModel or a DriftMonitor) and serve them in one process until interrupted."""
    for model in models:
        model.load()
    metrics.publish_memory_limit()
    # Everything loaded now lives until exit: keep the collector from scanning it (GC pauses).
    gc.collect()
    gc.freeze()
    server = FlowlineModelServer(host or default_host(), access_log, http_port=port, enable_grpc=False,
                                 enable_latency_logging=False)
    server.start(list(models))


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
    """Every 400 passes here: counted by reason, logged as one line."""
    reason = error.kind if isinstance(error, BadRequest) else "malformed_request"
    metrics.INVALID_INPUTS.labels(request.path_params.get("model_name", ""), reason).inc()
    log.info("400 %s %s: %s", request.method, request.url.path, error)
    return JSONResponse(status_code=400, content={"error": str(error)})


def v2_body_problem(document: object) -> str | None:
    """What is wrong with the shape of a v2 infer body, naming the field; None when it is well formed."""
    if not isinstance(document, dict):
        return "body: expected a JSON object with 'inputs'"
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        return "inputs: expected a list of tensors"
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            return f"{where}: expected an object with name, shape, datatype and data"
        if not isinstance(tensor.get("name"), str):
            return f"{where}.name: expected a string"
        if not isinstance(tensor.get("datatype"), str):
            return f"{where}.datatype: expected a string"
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            return f"{where}.shape: expected a list of integers"
        parameters = tensor.get("parameters")
        if "data" in tensor:
            if not isinstance(tensor["data"], list):
                return f"{where}.data: expected a list"
        elif not (isinstance(parameters, dict) and isinstance(parameters.get("binary_data_size"), int)):
            return f"{where}: has neither data nor parameters.binary_data_size"
    return None


def decode_v2(body: bytes, headers: dict[str, str], model_name: str) -> InferRequest:
    """Bytes of a v2 infer request (JSON, or JSON plus binary tensors) to an InferRequest; 400 if malformed."""
    json_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    try:
        json_length = int(json_length) if json_length is not None else len(body)
        document = orjson.loads(body[:json_length])
    except (ValueError, orjson.JSONDecodeError) as error:
        raise BadRequest("malformed_request", f"body: malformed JSON: {error}") from None
    problem = v2_body_problem(document)
    if problem:
        raise BadRequest("malformed_request", problem)
    try:
        return InferRequest.from_bytes(body, json_length, model_name)
    except InvalidInput:
        raise
    except Exception as error:  # parsing client bytes: every failure here is the client's
        raise BadRequest("malformed_request", f"body: cannot decode the request: {error}") from None


class FlowlineRESTServer(RESTServer):
    def __init__(self, *args, models: dict[str, Model], access_log: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.models = models
        self.access_log = access_log

    def _register_endpoints(self, app: FastAPI) -> None:
        # Registered first, so they answer instead of KServe's generic ones.
        app.add_api_route("/v2/repository/models/{model_name}/load", self.reload, methods=["POST"])
        app.add_api_route("/v2/models/{model_name}/infer", self.infer_v2, methods=["POST"])
        super()._register_endpoints(app)

    def _add_middlewares(self, app: FastAPI) -> None:
        # KServe's middlewares time and log every request; without an access log they only cost.
        if self.access_log:
            super()._add_middlewares(app)
        app.add_middleware(metrics.RequestCounter, version_of=self.version_of)

    def version_of(self, model_name: str) -> str:
        model = self.models.get(model_name)
        return model.package.version if model is not None else ""

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, _refused)

    async def infer_v2(self, model_name: str, request: Request) -> Response:
        """KServe's v2 infer without FastAPI's pydantic round trips: bytes in, orjson out.

        Same data plane and model call; half the CPU per request went to building and
        serialising pydantic models around it.
        """
        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        headers = dict(request.headers)
        infer_request = decode_v2(await request.body(), headers, model_name)
        response, response_headers = await self.dataplane.infer(model_name, infer_request, headers)
        content, json_length = response.to_rest()
        if json_length is None:
            return Response(orjson.dumps(content), media_type="application/json", headers=response_headers)
        response_headers[INFERENCE_CONTENT_LENGTH_HEADER] = str(json_length)
        return Response(content, media_type="application/octet-stream", headers=response_headers)

    async def reload(self, model_name: str) -> JSONResponse:
        """Load the model's package again from its path; refuse it if it fails verification."""
        model = self.models.get(model_name)
        if model is None:
            return JSONResponse(status_code=404, content={"error": f"model {model_name!r} is not served here"})
        try:
            version = await asyncio.to_thread(model.reload)
        except (PackageError, OSError, ValueError) as error:
            metrics.MODEL_RELOADS.labels(model_name, "refused").inc()
            log.warning("refused a new package for %s: %s", model_name, error)
            return JSONResponse(status_code=409, content={
                "error": f"package refused, still serving version {model.package.version}: {error}"})
        metrics.MODEL_RELOADS.labels(model_name, "loaded").inc()
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

    def start(self, models: list[Model]) -> None:
        """ModelServer.start for one REST process, bound to `host` rather than 0.0.0.0."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = FlowlineRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            grace_period=self.grace_period, models={m.name: m for m in models}, access_log=self.access_log,
        )
        self._rest_server.config.host = self.host
        if not self.access_log:  # per-request log lines cost more than the prediction
            access = logging.getLogger("uvicorn.access")
            access.handlers, access.propagate = [], False
            logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        self.servers.append(self._rest_server.start())
        # uvloop rather than KServe's asyncio loop; and one loop, so that the exception handler
        # and executor that setup_event_loop installs are on the loop that runs.
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.setup_event_loop()
        self.register_signal_handler()
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()
