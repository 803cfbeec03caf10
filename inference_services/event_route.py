"""The drift monitor's lean route: KServe payload-logger CloudEvents straight to the monitor.

KServe's payload logger POSTs each request a model receives to /v1/models/{monitor}:predict as a
binary-mode CloudEvent (ce-specversion 1.0, ce-id, ce-source and ce-type headers; the request as body).
Through KServe's v1 route, nine tenths of such an event's time went around the monitor: FastAPI's
routing and dependency solving, the CloudEvents SDK building an event from the headers and another for
the reply, json.dumps, three latency histograms (see README.md, "The drift monitor's events/s").

`DriftEventRoute`, an ASGI app in front of KServe's whole app, answers exactly those events: it
reads the body, parses it with orjson, hands type and data to `DriftMonitor.receive` (the call KServe's
route makes through `predict`) and answers as KServe's route does: a binary-mode CloudEvent of type
$CE_TYPE (default io.kserve.inference.response) and source $CE_SOURCE (default
io.kserve.inference.{name}), with a new id and time, carrying the request's other ce-* attributes too
when $CE_MERGE is true. A malformed event is the same 400 naming the field; answers are counted in
flowline_http_requests_total as the request counter counts them, a failure is a 500 as KServe's. A request
with ce-* headers that is no binary-mode event (a required attribute missing, or a ce-contenttype) is a 400
naming the attribute: KServe's route had taken an event without ce-id into the window, and answered a
ce-contenttype with a Python error. Everything else (an event of spec version 0.3, a structured-mode event,
a monitor that is not ready, any other route) goes on to KServe's route unchanged.

The payload logger forwards a request's body as the model received it, without its Content-Encoding: a
request an application sent gzip-compressed arrives here as gzip data, and is decompressed (up to the
server's body limit) before it is read.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

from flowline.inference_services import metrics
from flowline.inference_services.body_limit import GZIP_MAGIC, decompress
from flowline.inference_services.drift_monitor import DriftMonitor
from flowline.inference_services.model_route import read_body, request_headers, server_error
from flowline.inference_services.options import DEFAULT_MAX_BODY_BYTES
from flowline.inference_services.request_checks import BadRequest, clip

log = logging.getLogger("flowline.serving")

PREFIX, SUFFIX = "/v1/models/", ":predict"
REQUIRED = ("ce-specversion", "ce-id", "ce-source", "ce-type")  # a binary-mode CloudEvent's required attributes
NOT_MERGED = frozenset({"ce-id", "ce-time", "ce-type", "ce-source", "ce-datacontenttype"})  # the reply sets its own
Refusal = Callable[[Request, BadRequest], Awaitable[Response]]


def with_event_route(app, models: Mapping[str, Any], refuse: Refusal, worker: str | None = None,
                     max_bytes: int = DEFAULT_MAX_BODY_BYTES):
    """`app` behind the lean route of the drift monitors among `models`, or `app` itself when there are none;
    `refuse` answers a BadRequest (server.py's 400); `worker` (several workers) names this one in each answer's
    x-flowline-worker header, as the request counter does on the other routes; `max_bytes`: the most a logged
    gzip body may decompress to."""
    monitors = {name: model for name, model in models.items() if isinstance(model, DriftMonitor)}
    return DriftEventRoute(app, monitors, refuse, worker, max_bytes) if monitors else app


def binary_event(headers: Mapping[str, str]) -> bool:
    """A CloudEvents 1.0 event in binary mode whose data is the body as sent (no ce-contenttype to decode it by)."""
    return all(name in headers for name in REQUIRED) and headers["ce-specversion"] == "1.0" \
        and "ce-contenttype" not in headers


def event_problem(headers: Mapping[str, str]) -> BadRequest | None:
    """Why a request with ce-* headers is no binary-mode CloudEvent: a required attribute missing, or a
    ce-contenttype (CloudEvents 0.2's); None for one KServe's route reads (spec version 0.3 too)."""
    missing = [name for name in REQUIRED if name not in headers]
    if missing:
        return BadRequest("unsupported_event", f"{missing[0]}: a binary-mode CloudEvent carries "
                                               f"{', '.join(REQUIRED)}; this one lacks {', '.join(missing)}")
    if "ce-contenttype" in headers:
        return BadRequest("unsupported_event", "ce-contenttype: not an attribute of CloudEvents 0.3 or 1.0; send the "
                                               "data's type as Content-Type")
    return None


def event_data(body: bytes, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """The event's data: the body's JSON (a body that is not JSON is a 400 saying where it breaks); an event without
    data cannot be decoded. A logged request that was sent gzip-compressed is decompressed first, to at most
    `max_bytes`."""
    if not body:
        raise BadRequest("malformed_request", "body: cannot decode the request: the event carries no data")
    if body.startswith(GZIP_MAGIC):
        try:
            body = decompress(body, "gzip", max_bytes + 1)
        except ValueError as error:
            raise BadRequest("malformed_request", f"body: {error}") from None
        if len(body) > max_bytes:
            raise BadRequest("body_too_large", f"body: decompresses to more than the server's limit of "
                                               f"{max_bytes:,} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:  # NaN too: JSON has no NaN, send null
        raise BadRequest("malformed_request", f"body: malformed JSON: {clip(str(error))}") from None


class DriftEventRoute:
    """ASGI app: POST /v1/models/{monitor}:predict with a binary-mode CloudEvent answered here, the rest by `app`.

    In front of FastAPI's middlewares rather than among them: they cost a third of an event's time."""

    def __init__(self, app, monitors: Mapping[str, DriftMonitor], refuse: Refusal, worker: str | None = None,
                 max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.monitors = monitors
        self.refuse = refuse
        self.worker = {"x-flowline-worker": worker} if worker else {}
        self.reply_type = os.getenv("CE_TYPE", "io.kserve.inference.response")
        self.reply_sources = {name: os.getenv("CE_SOURCE", f"io.kserve.inference.{name}") for name in monitors}
        self.merge = os.getenv("CE_MERGE", "false").lower() == "true"

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        monitor = None
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith(PREFIX) and path.endswith(SUFFIX):
            monitor = self.monitors.get(path[len(PREFIX):-len(SUFFIX)])
        if monitor is None or not monitor.ready:
            await self.app(scope, receive, send)
            return
        headers = request_headers(scope)
        event = binary_event(headers)
        problem = None if event or not any(name.startswith("ce-") for name in headers) else event_problem(headers)
        if not event and problem is None:  # no ce-* header, or an event KServe's route reads (spec version 0.3)
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away
            return
        try:
            data = self._data(monitor, problem, body)
            answer = monitor.receive(headers["ce-type"], data)
        except BadRequest as error:
            failure = await self.refuse(Request({**scope, "path_params": {"model_name": monitor.name}}), error)
        except Exception as error:  # noqa: BLE001 - a failure is the server's
            log.exception("the drift monitor failed on an event")
            failure = server_error(error)
        else:
            await self._reply(monitor, headers, answer, send)
            return
        metrics.HTTP_REQUESTS.labels(monitor.name, monitor.package.version, str(failure.status_code)).inc()
        failure.headers.update(self.worker)
        await failure(scope, receive, send)

    def _data(self, monitor: DriftMonitor, problem: BadRequest | None, body: bytes) -> Any:
        """The data of a binary-mode event, or its headers' `problem`: a BadRequest counted as the monitor counts
        the events it refuses."""
        try:
            if problem is not None:
                raise problem
            return event_data(body, self.max_bytes)
        except BadRequest as error:
            metrics.DRIFT_INVALID_EVENTS.labels(monitor.monitored, error.kind).inc()
            raise

    async def _reply(self, monitor: DriftMonitor, headers: Mapping[str, str], answer: dict, send) -> None:
        """The answer as a binary-mode CloudEvent, sent as is (Starlette's Response would check each header again)."""
        content = orjson.dumps(answer)
        metrics.HTTP_REQUESTS.labels(monitor.name, monitor.package.version, "200").inc()
        attributes = [(key.encode("latin-1"), value.encode("latin-1"))
                      for key, value in {**self._reply_headers(monitor.name, headers), **self.worker}.items()]
        await send({"type": "http.response.start", "status": 200, "headers": [
            *attributes, (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})

    def _reply_headers(self, name: str, headers: Mapping[str, str]) -> dict[str, str]:
        """The reply event's attributes as KServe sets them (kserve.utils.utils.create_response_cloudevent)."""
        merged = [(key, value) for key, value in headers.items()
                  if key.startswith("ce-") and key not in NOT_MERGED] if self.merge else [("ce-specversion", "1.0")]
        return {**dict(merged), "ce-id": str(uuid.uuid4()), "ce-source": self.reply_sources[name],
                "ce-type": self.reply_type, "ce-time": datetime.now(timezone.utc).isoformat()}
