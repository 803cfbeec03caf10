"""Starting KServe's ModelServer for flowline packages, on a chosen host, hardened against bad input.

What this adds to kserve.ModelServer:
- the bind host is configurable (KServe 0.15 hard-codes 0.0.0.0): 127.0.0.1 by default;
- a body that cannot be decoded is a 400, whatever the decoder raised, never a 500;
- v2 infer parses bytes straight into KServe's InferRequest (no pydantic round trips),
  with every field type-checked first (400 naming the field); refused requests, requests
  for a model not served here (404) or unloaded (503), and readiness probes while the packages
  load (503) are logged as one line, not as an ERROR with a traceback;
- v2 infer and v1 predict call a FlowlineModel's `answer` directly, without KServe's DataPlane
  and Model.__call__ layers, so that concurrent requests can share one transform and predict
  (batching.py), and a ready FlowlineModel's are answered in front of FastAPI (model_route.py);
  CloudEvents, and models other than a FlowlineModel, take KServe's own route;
- `POST /v2/models/{name}/events` appends events (plain records, or the payload logger's CloudEvents)
  to the online store the model's entity features read, once per Idempotency-Key or CloudEvent id;
- an online store out of reach is a 503 naming it (logged as one line), and readiness is false until it
  answers a ping again;
- the model repository routes are off unless $FLOWLINE_REPOSITORY_TOKEN is set, and then
  take that bearer token: `POST /v2/repository/models/{name}/load` reloads that model's
  package without dropping requests (a package that fails verification is refused with
  409 and the running version keeps serving), `.../unload` takes the model out of
  service; readiness (`/v2/health/ready` and the model's) says so until a load;
- each answer leaves in one write to the socket, not uvicorn's two (one_write.py);
- a body above `max_body_bytes` (`flowline serve --max-body-mb`) is a 413, none of it kept, and one that stops
  arriving a 408 (body_limit.py).

With several workers (`serve(..., workers=N)`, workers.py) every worker runs this server on one
shared socket: a load or unload reaches one of them and is applied by all before it answers
(repository_sync.py); /metrics sums every worker's (metrics.py); readiness waits for every worker.

The private KServe methods and attributes this module overrides or calls are listed in
kserve_private.py, which a test holds against the pinned KServe.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import os
import socket
import warnings
from typing import AsyncContextManager, Optional, Sequence

import orjson
import uvicorn
import uvloop
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.importer import import_from_string
from kserve import Model
from kserve.model import InferenceVerb
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.model_server import FASTAPI_APP_IMPORT_STRING, ModelServer
from kserve.protocol.dataplane import JSON_HEADERS, DataPlane
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.v1_endpoints import V1Endpoints
from prometheus_client import exposition

from flowline.online_store import OnlineStoreUnavailable
from flowline.package.format import PackageError
from flowline.inference_services import metrics, model_route
from flowline.inference_services.body_limit import BodyLimit
from flowline.inference_services.event_route import with_event_route
from flowline.inference_services.one_write import OneWriteHttpProtocol
from flowline.inference_services.repository_sync import WorkerSync
from flowline.inference_services.listening import listening
from flowline.inference_services.options import (DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, REPOSITORY_TOKEN_ENV, default_host,
                                                 repository_token)
from flowline.inference_services.request_checks import BadRequest, clip, describe

log = logging.getLogger("flowline.serving")

ACCEPT_DELAY_S, MAX_ACCEPT_DELAY_S = 0.0002, 0.005  # per connection a worker holds; at most



def serve(models: Sequence[Model], host: str | None = None, port: int = DEFAULT_PORT, access_log: bool = False,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> int:
    """Serve each model (a FlowlineModel or a DriftMonitor) in this process until interrupted; several worker
    processes are workers.py's. Returns the exit status."""
    token = repository_token()  # a bad token stops the start, before the packages load
    host = host or default_host()
    listener = listening(host, port)
    if listener is None:
        return 1
    print(f"flowline: serving on {host}:{port}", flush=True)  # where, as several workers' supervisor says it
    serve_here(models, host, port, access_log, token, max_body_bytes, sockets=[listener])
    return 0


def serve_here(models: Sequence[Model], host: str, port: int, access_log: bool, token: str | None,
               max_body_bytes: int, sockets: Optional[list[socket.socket]] = None,
               sync: Optional[WorkerSync] = None) -> None:
    """Load each model and serve them in this process: on host:port, or on `sockets` as one of several
    workers that `sync` keeps on the same versions. A body above `max_body_bytes` is refused (body_limit.py)."""
    # kserve 0.15 answers v1 with fastapi's ORJSONResponse, which fastapi 0.165 deprecates on the first request:
    # a warning about their code that a person reads as an error in theirs.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    for model in models:
        model.load()
    metrics.count_garbage_collections()
    # Everything loaded now lives until exit: keep the collector from scanning it (GC pauses).
    gc.collect()
    gc.freeze()
    server = FlowlineModelServer(host, access_log, token, sync, max_body_bytes, http_port=port, enable_grpc=False,
                                 enable_latency_logging=False)
    server.start(list(models), sockets)


async def accept_one_at_a_time(server: uvicorn.Server, listener: socket.socket) -> None:
    """Give `server` the connections of `listener`, a listening socket every worker shares, one at a time, the
    fewer connections this worker already holds the sooner, until the server stops.

    Handed the socket itself, uvicorn (through uvloop and libuv) accepts every connection waiting each time it
    is woken: the first worker awake took all of wrk's 16 connections and the other sat idle. Here a worker
    woken by a waiting connection first waits `ACCEPT_DELAY_S` per connection it holds (at most
    `MAX_ACCEPT_DELAY_S`), so that the least busy worker, whose wait is shortest, takes it; then it takes one
    and listens again. A client that keeps its connections open is so spread evenly over the workers. The
    protocol is the one uvicorn would make (its `startup`): same config and server state, so its shutdown
    closes these connections as its own."""
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    config, fd = server.config, listener.fileno()

    def protocol() -> asyncio.Protocol:
        return config.http_protocol_class(config=config, server_state=server.server_state,
                                          app_state=server.lifespan.state, _loop=loop)

    def woken() -> None:
        loop.remove_reader(fd)
        delay = min(ACCEPT_DELAY_S * len(server.server_state.connections), MAX_ACCEPT_DELAY_S)
        if delay:
            loop.call_later(delay, take_one)
        else:
            take_one()

    def take_one() -> None:
        if server.should_exit:
            return
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):  # another worker took it, or it left
            pass
        else:
            loop.create_task(loop.connect_accepted_socket(protocol, sock=connection))
        loop.add_reader(fd, woken)

    listener.setblocking(False)
    loop.add_reader(fd, woken)
    try:
        while not server.should_exit:  # as uvicorn's own loop checks it
            await asyncio.sleep(0.1)
    finally:  # stop listening as the drain begins: a connection queued during it would wait it out, then be reset
        if not loop.is_closed():
            loop.remove_reader(fd)
        listener.close()


class FlowlineDataPlane(DataPlane):
    """KServe's DataPlane, but any failure to decode a client's body is a 400, never a 500, and the
    server is ready only while every model it serves is (an unloaded one is not) and, with several
    workers, once every worker has loaded its models."""

    sync: Optional[WorkerSync] = None
    repository_extension = False  # load and unload answer only with a repository token

    def metadata(self) -> dict:
        """The server's v2 metadata, listing the model repository extension only where it answers."""
        metadata = dict(super().metadata())
        metadata["extensions"] = [name for name in metadata.get("extensions", [])
                                  if name != "model_repository_extension" or self.repository_extension]
        return metadata

    def decode(self, body, headers, *args, **kwargs):
        if headers and "content-type" in headers:
            media = media_type(headers["content-type"])
            # KServe passes the bytes of any other type on undecoded: a v1 body is JSON whatever its label says
            # (a browser's fetch sends text/plain), as a v2 body is.
            headers = {**headers, "content-type": media if media in JSON_HEADERS else "application/json"}
        try:
            return super().decode(body, headers, *args, **kwargs)
        except BadRequest:
            raise
        except Exception as error:  # parsing client bytes: every failure here is the client's
            raise BadRequest("malformed_request", f"body: cannot decode the request: {clip(str(error))}") from None

    async def explain(self, model_name: str, request, headers: Optional[dict] = None):
        """KServe's explain, answered with the model's own headers only: KServe's began with the request's, which
        sent a client's Authorization and Cookie back, and a chunked request's framing beside a length."""
        model = await self.get_model(model_name)
        response, model_headers = await model(request, verb=InferenceVerb.EXPLAIN, headers=headers)
        return response, dict(model_headers or {})

    async def model_metadata(self, model_name: str) -> dict:
        """KServe's metadata, with the versions a flowline model serves (the champion's, then the canary's)."""
        metadata = await super().model_metadata(model_name)
        model = self.model_registry.get_model(model_name)
        if hasattr(model, "versions"):
            metadata["versions"] = model.versions()
        return metadata

    async def ready(self) -> bool:
        models = self.model_registry.get_models().values()
        return (all(model.ready for model in models)
                and (self.sync is None or self.sync.all_started()) and await super().ready()
                and all([await _store_reachable(model) for model in models]))

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        """KServe's, and for the readiness route (not the requests' own check) false while the model's online
        store is out of reach."""
        ready = await super().model_ready(model_name, disable_predictor_health_check)
        if ready and not disable_predictor_health_check:
            return await _store_reachable(self.model_registry.get_model(model_name))
        return ready


async def _store_reachable(model: Model) -> bool:
    """Whether the model's online store answers (FlowlineModel.store_reachable: a ping only after a request found
    it out of reach), in a thread: a host that does not answer must not hold up the event loop."""
    check = getattr(model, "store_reachable", None)
    return True if check is None else await asyncio.to_thread(check)


async def _refused(request: Request, error: InvalidInput) -> JSONResponse:
    """Every 400 passes here: counted by reason, logged as one line. KServe's own messages may quote
    a client's field (an output's name): they are cut short."""
    reason = error.kind if isinstance(error, BadRequest) else "malformed_request"
    message = str(error) if isinstance(error, BadRequest) else clip(str(error))
    metrics.INVALID_INPUTS.labels(request.path_params.get("model_name", ""), reason).inc()
    log.info("400 %s %s: %s", request.method, request.url.path, message)
    return JSONResponse(status_code=400, content={"error": message})


async def _protocol_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """A path or method nothing routes (404, 405) answered as the protocol answers errors, {"error": ...}: a
    client such as tritonclient reads that field of every failed answer."""
    return JSONResponse(status_code=error.status_code, content={"error": str(error.detail)}, headers=error.headers)


def _logged_in_one_line(status: int):
    """An answer of `status` to a model nobody serves here (404), one unloaded or a server still loading (503),
    logged as one line: KServe's handlers log an ERROR with a traceback for each, which any client, and every
    readiness probe while the packages load, would fill the logs with."""

    async def answer(request: Request, error: Exception) -> JSONResponse:
        log.info("%d %s %s: %s", status, request.method, clip(request.url.path), clip(str(error)))
        return JSONResponse(status_code=status, content={"error": str(error)})

    return answer


async def _store_unavailable(request: Request, error: OnlineStoreUnavailable) -> JSONResponse:
    """The online store cannot answer (explain, events, a CloudEvent): a 503 naming it, logged as one line."""
    log.warning("503 %s %s: %s", request.method, clip(request.url.path), error)
    return model_route.server_error(error)


def media_type(content_type: str) -> str:
    """A Content-Type's media type, as RFC 9110 compares it: case-insensitive, its parameters aside."""
    return content_type.split(";")[0].strip().lower()


class FlowlineRESTServer(RESTServer):
    def __init__(self, *args, models: dict[str, Model], access_log: bool, repository_token: str | None,
                 sync: Optional[WorkerSync], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.models = models
        self.access_log = access_log
        self.repository_token = repository_token
        self.sync = sync
        self.worker = str(os.getpid()) if sync is not None else None  # named in answers with several workers
        self.metrics_registry = metrics.multiprocess_registry(sync.pids) if sync is not None else None
        # Loads and unloads one at a time: an unload that arrives during a reload waits, then wins.
        self.repository_lock = asyncio.Lock()

    def _register_endpoints(self, app: FastAPI) -> None:
        # No schema of every route for whoever asks (FastAPI's /openapi.json, which KServe leaves on); the routes
        # are the KServe protocols' and the README's.
        app.openapi_url = None
        app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) != "/openapi.json"]
        # Registered first, so they answer instead of KServe's generic ones (its load and unload take no token).
        app.add_api_route("/v2/repository/models/{model_name}/load", self.reload, methods=["POST"])
        app.add_api_route("/v2/repository/models/{model_name}/unload", self.unload, methods=["POST"])
        app.add_api_route("/v2/models/{model_name}/infer", self.infer_v2, methods=["POST"])
        app.add_api_route("/v2/models/{model_name}/versions/{model_version}/infer", self.infer_v2_version,
                          methods=["POST"])
        app.add_api_route("/v2/models/{model_name}/versions/{model_version}", self.version_metadata, methods=["GET"])
        app.add_api_route("/v2/models/{model_name}/versions/{model_version}/ready", self.version_ready, methods=["GET"])
        app.add_api_route("/v2/models/{model_name}/events", self.push_events, methods=["POST"])
        app.add_api_route("/v1/models/{model_name}:predict", self.predict_v1, methods=["POST"])
        self.kserve_v1 = V1Endpoints(self.dataplane, self.model_repository_extension)
        if self.metrics_registry is not None:
            app.add_api_route("/metrics", self.export_metrics, methods=["GET"])
        super()._register_endpoints(app)

    async def start(self, sockets: Optional[list[socket.socket]] = None) -> None:
        """RESTServer.start, on the given listening sockets when there are; a worker also follows the
        others' loads and unloads."""
        self.create_application()
        if self.sync is None:
            await self._server.serve(sockets=sockets)
            return
        self.sync.report()
        follower = asyncio.create_task(self.sync.follow(self.models))
        accepting = asyncio.create_task(accept_one_at_a_time(self._server, sockets[0]))
        try:
            await self._server.serve(sockets=[])  # no listener of uvicorn's own: connections come from `accepting`
        finally:
            follower.cancel()
            accepting.cancel()

    async def export_metrics(self, request: Request) -> Response:
        """/metrics with several workers: all of theirs, summed (metrics.multiprocess_registry)."""
        encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
        return Response(content=encoder(self.metrics_registry), headers={"content-type": content_type})

    def _add_middlewares(self, app: FastAPI) -> None:
        # KServe's middlewares time and log every request; without an access log they only cost.
        if self.access_log:
            super()._add_middlewares(app)
        app.add_middleware(metrics.RequestCounter, versions_of=self.versions_of, worker=self.worker)

    def versions_of(self, model_name: str) -> Optional[list[str]]:
        """The versions a served model name answers with, champion first (metrics.counted_version picks the one a
        request is counted under); None for a name this server does not serve."""
        model = self.models.get(model_name)
        if model is None:
            return None
        return model.versions() if hasattr(model, "versions") else [model.package.version]

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, _refused)
        app.add_exception_handler(ModelNotFound, _logged_in_one_line(404))
        app.add_exception_handler(ModelNotReady, _logged_in_one_line(503))
        app.add_exception_handler(ServerNotReady, _logged_in_one_line(503))
        app.add_exception_handler(OnlineStoreUnavailable, _store_unavailable)
        app.add_exception_handler(StarletteHTTPException, _protocol_error)

    def serving(self, model_name: str) -> Model:
        """The model by name: 404 when none has it, 503 while it is unloaded."""
        model = self.models.get(model_name)
        if model is None:
            raise ModelNotFound(model_name)
        if not model.ready:
            raise ModelNotReady(model_name)
        return model

    async def infer_v2(self, model_name: str, request: Request) -> Response:
        """KServe's v2 infer without FastAPI's pydantic round trips (model_route.infer_v2). A ready FlowlineModel's
        requests are answered in front of FastAPI (model_route.ModelRoute); the others come here."""
        return await model_route.infer_v2(self.serving(model_name), self.dataplane, await request.body(),
                                          request.headers)

    async def infer_v2_version(self, model_name: str, model_version: str, request: Request) -> Response:
        """v2 infer at a versioned URL: answered by that version (the champion's or the canary's), 404 for another."""
        return await model_route.infer_v2(self.serving(model_name), self.dataplane, await request.body(),
                                          request.headers, model_version)

    def served_version(self, model_name: str, model_version: str) -> Model:
        """The model serving `model_version` under `model_name`; 404 when it serves no such version."""
        model = self.models.get(model_name)
        if model is None or not hasattr(model, "versions") or model_version not in model.versions():
            raise ModelNotFound(f"{model_name} version {model_version}")
        return model

    async def version_metadata(self, model_name: str, model_version: str) -> Response:
        """A served version's metadata (KServe answers 501 for any versioned URL)."""
        self.served_version(model_name, model_version)
        return JSONResponse(await self.dataplane.model_metadata(model_name))

    async def version_ready(self, model_name: str, model_version: str) -> Response:
        """Whether a served version is ready to answer: 503 while its model is not, or its online store is out of
        reach."""
        model = self.served_version(model_name, model_version)
        if not model.ready or not await _store_reachable(model):
            raise ModelNotReady(model_name)
        return JSONResponse({"name": model_name, "ready": True})

    async def predict_v1(self, model_name: str, request: Request) -> Response:
        """KServe's v1 predict, answered by a FlowlineModel (model_route.predict_v1) when it is not a CloudEvent,
        which KServe answers with a CloudEvent; other models take KServe's route too."""
        model = self.serving(model_name)
        if not hasattr(model, "answer") or model_route.is_cloudevent(request.headers):
            return await self.kserve_v1.predict(model_name, request)
        return await model_route.predict_v1(model, self.dataplane, await request.body(), request.headers)

    async def push_events(self, model_name: str, request: Request) -> JSONResponse:
        """Append events to the online store that the model's entity features read (FlowlineModel.push_events):
        plain records, or a payload-logger CloudEvent in binary mode (ce-* headers, the request as body)."""
        model = self.models.get(model_name)
        if model is None or not hasattr(model, "push_events"):
            return JSONResponse(status_code=404, content={"error": f"model {model_name!r} takes no events here"})
        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        media = media_type(request.headers.get("content-type", ""))
        if media not in JSON_HEADERS:  # text/plain is what a web page may send cross-site without asking: these
            # requests change what later answers read, so only a client that says JSON is heard
            return JSONResponse(status_code=415, content={
                "error": f"content-type: events are JSON (application/json), got {describe(media or 'none')}"})
        try:
            document = orjson.loads(await request.body())
        except orjson.JSONDecodeError as error:
            raise BadRequest("malformed_request", f"body: malformed JSON: {clip(str(error))}") from None
        # In a thread, as explain: a push of 10,000 records takes a while, which readiness and every other request
        # on the worker would wait for (the stores lock their writes).
        return JSONResponse(content=await asyncio.to_thread(model.push_events, document, dict(request.headers)))

    def _repository_refusal(self, request: Request, model_name: str) -> JSONResponse | None:
        """Why a model repository call is refused (routes off, no or wrong token, unknown model); None if allowed."""
        if self.repository_token is None:
            return JSONResponse(status_code=404, content={
                "error": f"the model repository routes are off; set {REPOSITORY_TOKEN_ENV} to enable them"})
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self.repository_token.encode()):
            log.warning("refused %s %s: no valid bearer token", request.method, clip(request.url.path))
            return JSONResponse(status_code=401, headers={"WWW-Authenticate": "Bearer"},
                                content={"error": "authorization: expected the repository's bearer token"})
        if model_name not in self.models:
            return JSONResponse(status_code=404, content={"error": f"model {model_name!r} is not served here"})
        return None

    def _across_workers(self) -> AsyncContextManager:
        """The repository lock across workers (one load or unload at a time); nothing more in one process."""
        return self.sync.exclusive() if self.sync is not None else contextlib.nullcontext()

    async def unload(self, model_name: str, request: Request) -> JSONResponse:
        """Take the model out of service: its requests get 503 and readiness is false until a load."""
        refusal = self._repository_refusal(request, model_name)
        if refusal is not None:
            return refusal
        async with self.repository_lock, self._across_workers():
            self.models[model_name].ready = False
            problems = await self.sync.publish(model_name, "unload", "") if self.sync is not None else []
            if problems:
                return _not_applied_everywhere(model_name, "unload", problems)
        log.warning("%s unloaded: out of service until POST /v2/repository/models/%s/load", model_name, model_name)
        return JSONResponse(content={"name": model_name, "unload": True})

    async def reload(self, model_name: str, request: Request) -> JSONResponse:
        """Load the model's package again from its path; refuse it if it fails verification."""
        refusal = self._repository_refusal(request, model_name)
        if refusal is not None:
            return refusal
        model = self.models[model_name]
        async with self.repository_lock, self._across_workers():
            try:
                version = await asyncio.to_thread(model.reload)
            except Exception as error:  # noqa: BLE001 - whatever fails, the running version keeps serving
                metrics.MODEL_RELOADS.labels(model_name, "refused").inc()
                log.warning("refused a new package for %s: %s", model_name, error,
                            exc_info=not isinstance(error, (PackageError, OSError, ValueError)))
                state = (f"still serving version {model.package.version}" if model.ready
                         else "the model stays unloaded")
                return JSONResponse(status_code=409, content={"error": f"package refused, {state}: {error}"})
            problems = await self.sync.publish(model_name, "load", version) if self.sync is not None else []
            if problems:
                return _not_applied_everywhere(model_name, "load", problems)
        metrics.MODEL_RELOADS.labels(model_name, "loaded").inc()
        log.info("%s now serves version %s", model_name, version)
        return JSONResponse(content={"name": model_name, "load": True, "version": version})


def _not_applied_everywhere(model_name: str, action: str, problems: list[str]) -> JSONResponse:
    """A load or unload this worker applied but another did not: answers may differ by worker until a new load."""
    log.error("%s of %s not applied by every worker: %s", action, model_name, "; ".join(problems))
    return JSONResponse(status_code=500, content={
        "error": f"{action} of {model_name} not applied by every worker: {'; '.join(problems)}"})


class FlowlineModelServer(ModelServer):
    """kserve.ModelServer bound to `host`, with flowline's error handling and reload route."""

    def __init__(self, host: str, access_log: bool = False, repository_token: str | None = None,
                 sync: Optional[WorkerSync] = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.repository_token = repository_token
        self.sync = sync
        self.dataplane = FlowlineDataPlane(
            model_registry=self.registered_models, predictor_config=self.dataplane.predictor_config
        )
        self.dataplane.sync = sync
        self.dataplane.repository_extension = repository_token is not None

    def start(self, models: list[Model], sockets: Optional[list[socket.socket]] = None) -> None:
        """ModelServer.start for one REST process, bound to `host` rather than 0.0.0.0, or serving on the
        listening `sockets` a parent process shares between workers."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = FlowlineRESTServer(
            FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension, self.http_port,
            grace_period=self.grace_period, models={m.name: m for m in models}, access_log=self.access_log,
            repository_token=self.repository_token, sync=self.sync,
        )
        self._rest_server.config.host = self.host
        self._rest_server.config.http = OneWriteHttpProtocol  # each answer in one write (one_write.py)
        by_name, worker = {m.name: m for m in models}, self._rest_server.worker
        app = model_route.with_model_route(import_from_string(FASTAPI_APP_IMPORT_STRING), by_name, self.dataplane,
                                           _refused, worker)
        self._rest_server.config.app = BodyLimit(with_event_route(app, by_name, _refused, worker, self.max_body_bytes),
                                                 self.max_body_bytes, by_name, self._rest_server.versions_of)
        if not self.access_log:  # per-request log lines cost more than the prediction
            access = logging.getLogger("uvicorn.access")
            access.handlers, access.propagate = [], False
            logging.getLogger("kserve.trace").setLevel(logging.WARNING)
        self.servers.append(self._rest_server.start(sockets))
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
