"""A cap on the size of a request's body, in front of every route: 413 above it, and none of it kept.

Every route reads the whole body into memory and parses it, which takes several times its size: one
request of 300 MB took a worker past 1.1 GB, above the ServingRuntimes' memory limit. A body that
declares its length (Content-Length) is refused on its headers; a chunked one is read up to the cap
and refused as soon as it passes it. Before answering, what the client is still sending is read and
dropped (up to LINGER_BYTES, LINGER_S at a time): closing a connection with unread bytes resets it,
and the client would see a broken pipe instead of the 413. A larger body gets the 413 at once.

The cap holds for one request; concurrent ones are held to IN_FLIGHT_BODIES bodies of that size at once per
worker (48 of 15.5 MiB at once took one worker from 300 MiB to 1.1 GB): a request whose body would pass that is a
503 with Retry-After, what an overloaded KServe predictor answers, and nothing of it is kept. A body is counted by
its declared length, or at the cap while its length is unknown (chunked, or compressed), until its answer is sent.

A body sent with `Content-Encoding: gzip` (or `deflate`) is decompressed here, and the cap holds for what it
decompresses to, so a small bomb is refused as a large body would be; the routes see the plain body. Every
member of a gzip body is read, and deflate is taken in zlib's format or raw, as clients send both. Another
encoding, or more than one, is a 415 naming it; data that is not what its header says, or that goes on after
it, a 400. A Transfer-Encoding other than chunked (`gzip, chunked`) is a 501 naming it: it was read as plain
chunked, its gzip data as if it were the body.

A body whose next bytes do not arrive within BODY_IDLE_S is a 408 and its connection is closed: a stalled or
half-sent request would otherwise hold its connection for as long as the client keeps it open, and hold a stopping
server for its whole grace period. The wait is for each part of the body, not the whole, so a slow client that keeps
sending is read to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from typing import Any, Collection, Optional, Sequence

import orjson

from flowline.inference_services import metrics

LINGER_BYTES = 1 << 20
LINGER_S = 1.0
ENCODINGS = ("gzip", "x-gzip", "deflate")
GZIP_MAGIC = b"\x1f\x8b"  # how gzip data begins (JSON never does)
IN_FLIGHT_BODIES = 4  # bodies of the largest size a worker holds at once: 64 MiB at the default 16 MiB cap
RETRY_AFTER_S = 1
BODY_IDLE_S = 10.0  # the longest wait for a body's next bytes before its request is a 408


class BodyStalled(Exception):
    """The client sent no more of its body for BODY_IDLE_S."""


class BodyLimit:
    """ASGI app: an HTTP request whose body is larger than `max_bytes` gets 413 naming the cap; others go to `app`.
    Refusals are counted in flowline_invalid_inputs_total{reason="body_too_large"} (or "body_encoding") under the
    model the path names, when it is one of `models` (any other path would make a new label); and, on a model's
    predict, explain and infer routes, in flowline_http_requests_total as the request counter counts the answers
    it sees (`versions_of`: a model name's served versions, None for a name not served), so that the invalid
    ratio's denominator holds them."""

    def __init__(self, app, max_bytes: int, models: Collection[str], versions_of: metrics.VersionsOf) -> None:
        self.app, self.max_bytes, self.models, self.versions_of = app, max_bytes, frozenset(models), versions_of
        self.in_flight = 0  # bytes of the bodies being read or answered (one event loop: no lock)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = {**scope, metrics.ARRIVED: time.perf_counter()}  # the outermost app: the request's wait starts here
        encodings = [name for name in _codings(scope, b"content-encoding") if name != "identity"]
        transfer = _codings(scope, b"transfer-encoding")
        if transfer not in ([], ["chunked"]):  # the server decodes chunked alone (RFC 9112: a 501)
            await _drop_the_rest(receive)
            await self._refuse(scope, send, 501, "body_encoding", f"Transfer-Encoding: {', '.join(transfer)} is not "
                               f"accepted; send the body chunked alone, compressed with Content-Encoding: gzip")
            return
        length = _content_length(scope)
        held = _held(length, bool(transfer), bool(encodings), self.max_bytes)
        if held and self.in_flight + held > IN_FLIGHT_BODIES * self.max_bytes:
            await _drop_the_rest(receive)
            await self._refuse(scope, send, 503, None, f"the server is busy: {self.in_flight:,} bytes of request "
                               f"bodies in flight, and this one's {held:,} would pass its limit of "
                               f"{IN_FLIGHT_BODIES * self.max_bytes:,}; retry shortly",
                               [(b"retry-after", str(RETRY_AFTER_S).encode())])
            return
        self.in_flight += held
        try:
            await self._limited(scope, receive, send, encodings, length)
        except BodyStalled:
            await self._refuse(scope, send, 408, None, f"body: no more of it arrived for {BODY_IDLE_S:g} s; the "
                               f"request is dropped: send it again")
        finally:
            self.in_flight -= held

    async def _limited(self, scope, receive, send, encodings: list[str], length: Optional[int]) -> None:
        if encodings:
            await self._decoded(scope, receive, send, ", ".join(encodings))
            return
        if length is not None and length > self.max_bytes:  # the server holds the client to a declared length
            if length <= self.max_bytes + LINGER_BYTES:
                await _drop_the_rest(receive)
            await self._too_large(scope, send, length)
            return
        body = await self._read_up_to_cap(receive)  # declared, or chunked: its size known only as it arrives
        if body is None:  # the client went away
            return
        if len(body) > self.max_bytes:
            await _drop_the_rest(receive)
            await self._too_large(scope, send, None)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _decoded(self, scope, receive, send, encoding: str) -> None:
        """Pass the body decompressed, with headers that say so, to `app`; or refuse it."""
        length = _content_length(scope)
        if encoding not in ENCODINGS or (length is not None and length > self.max_bytes):
            await _drop_the_rest(receive)
            if encoding not in ENCODINGS:
                await self._refuse(scope, send, 415, "body_encoding", f"Content-Encoding: {encoding} is not accepted; "
                                   f"send the body as it is, or with gzip or deflate")
            else:
                await self._too_large(scope, send, length)
            return
        compressed = await self._read_up_to_cap(receive)
        if compressed is None:
            return
        if len(compressed) > self.max_bytes:
            await _drop_the_rest(receive)
            await self._too_large(scope, send, None)
            return
        try:
            # in a thread: 16 MiB take tens of milliseconds, which the event loop's other requests would wait
            body = await asyncio.to_thread(decompress, compressed, encoding, self.max_bytes + 1)
        except ValueError as error:
            await self._refuse(scope, send, 400, "body_encoding", f"body: {error}")
            return
        if len(body) > self.max_bytes:
            await self._too_large(scope, send, None)
            return
        headers = [(name, value) for name, value in scope["headers"]
                   if name.lower() not in (b"content-encoding", b"content-length", b"transfer-encoding")]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.app({**scope, "headers": headers}, _replay(body, receive), send)

    async def _read_up_to_cap(self, receive) -> Optional[bytes]:
        """The body, or more than the cap of it; None if the client went away. BodyStalled if it stops sending."""
        chunks, size = [], 0
        while True:
            try:
                async with asyncio.timeout(BODY_IDLE_S):
                    message: dict[str, Any] = await receive()
            except TimeoutError:
                raise BodyStalled from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes or not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope, send, length: Optional[int]) -> None:
        size = f"{length:,} bytes" if length is not None else "more"
        await self._refuse(scope, send, 413, "body_too_large", f"body: {size}, above the server's limit of "
                           f"{self.max_bytes:,} bytes; send fewer records a request (flowline serve --max-body-mb)")

    async def _refuse(self, scope, send, status: int, reason: Optional[str], message: str,
                      headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Answer `status` with `message`; an invalid body's `reason` is counted (a busy server's 503 has none)."""
        if reason is not None:
            model = _model_name(scope["path"])
            metrics.INVALID_INPUTS.labels(model if model in self.models else "", reason).inc()
        route = metrics.model_request(scope)
        if route is not None:
            metrics.count_request(route, status, self.versions_of, None, time.perf_counter() - metrics.arrived(scope))
        content = orjson.dumps({"error": message})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                (b"content-length", str(len(content)).encode()), *headers]})
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


def decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """`data` decoded from `encoding` (gzip, x-gzip or deflate), up to `limit` bytes of it (more is the caller's
    413); a ValueError saying what is wrong with it."""
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else \
        zlib.MAX_WBITS if len(data) > 1 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0 else \
        -zlib.MAX_WBITS  # deflate: zlib's format when it has zlib's header, else raw
    parts, size, rest = [], 0, data
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            part = inflater.decompress(rest, limit - size)
        except zlib.error as error:
            raise ValueError(f"not {encoding} data ({error})") from None
        parts.append(part)
        size += len(part)
        if size >= limit:
            return b"".join(parts)
        if not inflater.eof:
            raise ValueError(f"its {encoding} data ends early")
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)
        if wbits != 16 + zlib.MAX_WBITS or not rest.startswith(GZIP_MAGIC):  # gzip may hold several members
            raise ValueError(f"{len(rest):,} bytes after its {encoding} data")


def _header(scope, wanted: bytes) -> Optional[str]:
    for name, value in scope["headers"]:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def _codings(scope, name: bytes) -> list[str]:
    """The codings a Content-Encoding or Transfer-Encoding header lists, lower-case, in order; [] without one."""
    return [coding for coding in (_header(scope, name) or "").lower().replace(" ", "").split(",") if coding]


def _content_length(scope) -> Optional[int]:
    try:
        return int(_header(scope, b"content-length"))
    except (TypeError, ValueError):
        return None


def _held(length: Optional[int], chunked: bool, encoded: bool, max_bytes: int) -> int:
    """The bytes a request's body may take while it is read and answered: none without a body (a GET), its declared
    length, or the cap while its size is unknown (chunked, or compressed)."""
    if length is None and not chunked:
        return 0
    return max_bytes if encoded or length is None else min(length, max_bytes)


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
