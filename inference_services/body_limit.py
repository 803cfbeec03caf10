"""A cap on the size of a request's body, in front of every route: 413 above it, and none of it kept.

Every route reads the whole body into memory and parses it, which takes several times its size: one
request of 300 MB took a worker past 1.1 GB, above the ServingRuntimes' memory limit. A body that
declares its length (Content-Length) is refused on its headers; a chunked one is read up to the cap
and refused as soon as it passes it. Before answering, what the client is still sending is read and
dropped (up to LINGER_BYTES, LINGER_S at a time): closing a connection with unread bytes resets it,
and the client would see a broken pipe instead of the 413. A larger body gets the 413 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Collection, Optional

import orjson

from flowline.inference_services import metrics

LINGER_BYTES = 1 << 20
LINGER_S = 1.0


class BodyLimit:
    """ASGI app: an HTTP request whose body is larger than `max_bytes` gets 413 naming the cap; others go to `app`.
    Refusals are counted in flowline_invalid_inputs_total{reason="body_too_large"} under the model the path
    names, when it is one of `models` (any other path would make a new label)."""

    def __init__(self, app, max_bytes: int, models: Collection[str]) -> None:
        self.app, self.max_bytes, self.models = app, max_bytes, frozenset(models)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None:  # the server holds the client to it: no more than that arrives
            if length > self.max_bytes:
                if length <= self.max_bytes + LINGER_BYTES:
                    await _drop_the_rest(receive)
                await self._refuse(scope, send, length)
            else:
                await self.app(scope, receive, send)
            return
        body = await self._read_up_to_cap(receive)  # chunked: its size is known only as it arrives
        if body is None:  # the client went away
            return
        if len(body) > self.max_bytes:
            await _drop_the_rest(receive)
            await self._refuse(scope, send, None)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_up_to_cap(self, receive) -> Optional[bytes]:
        chunks, size = [], 0
        while True:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes or not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope, send, length: Optional[int]) -> None:
        size = f"{length:,} bytes" if length is not None else "more"
        message = (f"body: {size}, above the server's limit of {self.max_bytes:,} bytes; send fewer records a "
                   f"request (flowline serve --max-body-mb)")
        model = _model_name(scope["path"])
        metrics.INVALID_INPUTS.labels(model if model in self.models else "", "body_too_large").inc()
        content = orjson.dumps({"error": message})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})


async def _drop_the_rest(receive) -> None:
    """Read and drop the body's remaining bytes, up to LINGER_BYTES and LINGER_S per message."""
    left = LINGER_BYTES
    with contextlib.suppress(asyncio.TimeoutError):
        while left > 0:
            message = await asyncio.wait_for(receive(), LINGER_S)
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            left -= len(message.get("body", b""))


def _content_length(scope) -> Optional[int]:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _model_name(path: str) -> str:
    """The model a /v1/models/NAME... or /v2/models/NAME/... path names, as the metrics label it; "" for others."""
    for prefix in ("/v1/models/", "/v2/models/"):
        if path.startswith(prefix):
            return path[len(prefix):].split("/")[0].split(":")[0]
    return ""


def _replay(body: bytes, receive):
    """A `receive` that gives the body already read, then whatever the client sends next (a disconnect)."""
    given = False

    async def replayed() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
