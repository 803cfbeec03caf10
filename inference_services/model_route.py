"""v2 infer and v1 predict for flowline's models: bytes in, the answer's bytes out, and the lean route that
serves them in front of FastAPI.

`infer_v2` and `predict_v1` are the routes' whole work: decode the body (every v2 field type-checked, a
400 naming the field), have a FlowlineModel `answer` it (batched with concurrent requests, batching.py),
and encode the answer with orjson. The server's FastAPI routes call them, and so does `ModelRoute`, an
ASGI app in front of FastAPI that answers a ready FlowlineModel's v2 infer and v1 predict requests
itself: FastAPI's routing, dependency solving and middleware stack cost a third of a served row's time.
Anything else (a CloudEvent, the drift monitor, a model that is unknown or not ready, another method or
path) goes on to FastAPI unchanged, as do the model's own 404 and 503. Answers are counted in
flowline_http_requests_total, under the version that took them (the canary's, or the one a versioned URL
names), and carry the worker's name as the request counter does on other routes; a
refused request is server.py's 400, an online store out of reach a 503 naming it, any other failure KServe's 500.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any, Awaitable, Callable, Mapping, Optional

import orjson
from cloudevents.sdk.converters.util import has_binary_headers
from kserve import Model
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferRequest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowline.inference_services import metrics
from flowline.online_store import OnlineStoreUnavailable
from flowline.inference_services.request_checks import BadRequest, clip
from flowline.inference_services.v2_body import binary_problem, v2_body_problem

log = logging.getLogger("flowline.serving")

V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
V1_PREDICT = re.compile(r"^/v1/models/([^/:]+):predict$")
Refusal = Callable[[Request, InvalidInput], Awaitable[Response]]


def decode_v2(body: bytes, headers: Mapping[str, str], model_name: str) -> InferRequest:
    """Bytes of a v2 infer request (JSON, or JSON plus binary tensors) to an InferRequest; 400 if malformed."""
    json_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    try:
        json_length = int(json_length) if json_length is not None else len(body)
        document = orjson.loads(body[:json_length])
    except (ValueError, orjson.JSONDecodeError) as error:
        raise BadRequest("malformed_request", f"body: malformed JSON: {clip(str(error))}") from None
    problem = v2_body_problem(document) or binary_problem(document, body[json_length:])
    if problem:
        raise BadRequest("malformed_request", problem)
    try:
        return InferRequest.from_bytes(body, json_length, model_name)
    except InvalidInput:
        raise
    except Exception as error:  # parsing client bytes: every failure here is the client's
        raise BadRequest("malformed_request", f"body: cannot decode the request: {clip(str(error))}") from None


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    """A CloudEvent in binary or structured mode: KServe's route answers it, with a CloudEvent."""
    return has_binary_headers(headers) or headers.get("content-type", "") == "application/cloudevents+json"


async def infer_v2(model: Model, dataplane: DataPlane, body: bytes, headers: Mapping[str, str],
                   version: Optional[str] = None) -> Response:
    """A v2 infer answer: a FlowlineModel's `answer` (by the version a versioned URL names), any other model's
    through the data plane."""
    infer_request = decode_v2(body, headers, model.name)
    if hasattr(model, "answer"):
        response, response_headers = await model.answer(infer_request, headers, version), {}
    else:
        response, response_headers = await dataplane.infer(model.name, infer_request, dict(headers))
    content, json_length = response.to_rest()
    if json_length is None:
        return Response(orjson.dumps(content), media_type="application/json", headers=response_headers)
    response_headers[INFERENCE_CONTENT_LENGTH_HEADER] = str(json_length)
    return Response(content, media_type="application/octet-stream", headers=response_headers)


async def predict_v1(model: Model, dataplane: DataPlane, body: bytes, headers: Mapping[str, str]) -> Response:
    """A FlowlineModel's v1 predict answer (not for CloudEvents): KServe's decoding, KServe's JSON."""
    payload, _ = dataplane.decode(body=body, headers=headers)
    response = await model.answer(payload, headers)
    return Response(orjson.dumps(response, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


def with_model_route(app, models: Mapping[str, Model], dataplane: DataPlane, refuse: Refusal,
                     worker: Optional[str] = None):
    """`app` behind the lean route of the FlowlineModels among `models`, or `app` itself when there are none;
    `refuse` answers an InvalidInput (server.py's 400); `worker` names this one in each answer."""
    answering = {name: model for name, model in models.items() if hasattr(model, "answer")}
    return ModelRoute(app, answering, dataplane, refuse, worker) if answering else app


class ModelRoute:
    """ASGI app: a ready FlowlineModel's v2 infer and v1 predict (not CloudEvents) answered here, the rest by `app`."""

    def __init__(self, app, models: Mapping[str, Model], dataplane: DataPlane, refuse: Refusal,
                 worker: Optional[str] = None) -> None:
        self.app, self.models, self.dataplane, self.refuse = app, models, dataplane, refuse
        self.worker = [(b"x-flowline-worker", worker.encode())] if worker else []

    async def __call__(self, scope, receive, send) -> None:
        route = self._route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        started = metrics.arrived(scope)
        answer, model, requested = route
        headers = request_headers(scope)
        if answer is predict_v1 and is_cloudevent(headers):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        note = metrics.answering()
        try:
            response = await answer(model, self.dataplane, body, headers)
        except InvalidInput as error:
            response = await self.refuse(Request({**scope, "path_params": {"model_name": model.name}}), error)
        except ModelNotFound as error:  # a versioned URL naming a version not served here
            response = JSONResponse(status_code=404, content={"error": str(error)})
        except OnlineStoreUnavailable as error:  # no traceback per request while Redis is down
            log.warning("%s: 503: %s", model.name, error)
            response = server_error(error)
        except Exception as error:  # noqa: BLE001 - a failure is the server's
            log.exception("%s failed on a request", model.name)
            response = server_error(error)
        version = metrics.counted_version(model.versions(), requested, note.version)
        metrics.count_answer(model.name, version, response.status_code, time.perf_counter() - started)
        response.raw_headers.extend(self.worker)
        await response(scope, receive, send)

    def _route(self, scope) -> Optional[tuple[Callable[..., Awaitable[Response]], Model, Optional[str]]]:
        """The answer, the model and the version a versioned URL names (else None) of a request this route
        takes; None for any other."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        path = scope["path"]
        match, requested = V2_INFER.match(path), None
        if match is not None:
            requested = match.group(2)  # None without /versions/V
            answer = functools.partial(infer_v2, version=requested)
        else:
            match, answer = V1_PREDICT.match(path), predict_v1
        model = self.models.get(match.group(1)) if match is not None else None
        return (answer, model, requested) if model is not None and model.ready else None


def request_headers(scope) -> dict[str, str]:
    """An ASGI request's headers as text, by their lower-case names."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


def server_error(error: Exception) -> JSONResponse:
    """A failure of the server's, answered as KServe's generic exception handler answers it: a 500; an online
    store that cannot answer (unreachable, or holding events this version cannot read) is a 503 naming it."""
    if isinstance(error, OnlineStoreUnavailable):
        return JSONResponse(status_code=503, content={"error": str(error)})
    return JSONResponse(status_code=500, content={"error": f"{type(error).__name__} : {error}"})


async def read_body(receive) -> Optional[bytes]:
    """The whole request body; None when the client disconnects first."""
    chunks = []
    while True:
        message: dict[str, Any] = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
