"""uvicorn's HTTP protocol with each answer sent in one write to the socket, not two.

uvicorn (httptools) writes an answer's status line and headers when the app sends http.response.start,
and its body in a second write at http.response.body. Each write is a send() on the socket, and over
loopback each runs the kernel's TCP transmit path and wakes the reader. For the small answers of a
model server that second send was a third of the HTTP layer's CPU: bare Starlette answered 11,000 to
12,000 requests/s in one process, 15,500 with one write (82-92 against 64 µs of server CPU per request).

`OneWriteHttpProtocol` gives uvicorn's protocol a `CoalescingTransport`, which holds what uvicorn writes
and writes it in one piece when the answer is complete (uvicorn's on_response_complete), or else (a
streamed answer, a 100 Continue) at the end of the event loop's step. Writing at the step's end alone cost
a sequential client 50-100 µs a request, against writing as soon as the answer is whole. Nothing else
changes: uvicorn's flow control, keep-alive and shutdown work on the real transport.

It also drops a request's offer to upgrade to another protocol than WebSocket (`Upgrade: h2c`, which
Java's default HttpClient and `curl --http2` send on http:// URLs). httptools takes such a request's body
for the new protocol's bytes, so uvicorn ran it with an empty body: a 400 on every call. The server
does not switch protocols, as RFC 9110 lets it, and the request is read as sent. An Upgrade header
split across two reads of the socket is missed (clients send a request's headers in one segment).

And it closes a connection that has not sent a whole request's headers HEADERS_S after it opened or after its
last answer. uvicorn's keep-alive timer stops at the first byte, and a new connection gets none: a connection
that sent nothing, or half a request's headers, was held open as long as its client kept it (tested at 40 s).
A request's body has its own wait (body_limit.py). And a request whose headers pass HEADERS_BYTES is answered
431 and its connection closed: uvicorn (httptools) buffered headers without a limit, and ten connections of
100 MiB of headers, sent in well under HEADERS_S, took a worker from 303 MB to 1,084 MB, past its pod's 1 GiB.
"""

from __future__ import annotations

import asyncio
import re
from typing import Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADERS_S = 10.0  # the longest a connection may take to send a request's headers
HEADERS_BYTES = 64 * 1024  # the most a request's line and headers may take (nginx's default allows 32 KiB)


class CoalescingTransport:
    """`transport` with its writes held until `flush`, at the latest at the end of the event loop's step;
    every other call goes to it as is."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop, self._pending = transport, loop, []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Write what is pending, in one write."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


# An Upgrade header offering anything but WebSocket, with the line break before it.
UPGRADE_OFFER = re.compile(rb"\r\nupgrade[ \t]*:(?![ \t]*websocket\b)[^\r\n]*", re.IGNORECASE)


def without_upgrade_offer(data: bytes) -> bytes:
    """`data` with a non-WebSocket Upgrade header removed from the request headers it holds."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    kept = UPGRADE_OFFER.sub(b"", head)
    return kept if end < 0 else kept + data[end:]


def _too_large() -> bytes:
    body = f'{{"error": "request headers: above the limit of {HEADERS_BYTES:,} bytes"}}'.encode()
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body))


class OneWriteHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a CoalescingTransport (uvicorn.Config(http=...)), reading
    a request that offers a protocol upgrade other than WebSocket as a plain one, and closing a connection whose
    request headers take longer than HEADERS_S or more than HEADERS_BYTES."""

    headers_deadline: Optional[asyncio.TimerHandle] = None
    headers_bytes = 0  # received since the wait for a request's headers began

    def data_received(self, data: bytes) -> None:
        if b"pgrade" in data or b"PGRADE" in data:  # a header's name: rare, and only then searched for
            data = without_upgrade_offer(data)
        super().data_received(data)
        if self.headers_deadline is not None:  # still waiting for the headers' end, after what this data held
            self.headers_bytes += len(data)
            if self.headers_bytes > HEADERS_BYTES and not self.transport.is_closing():
                self._stop_waiting_for_headers()
                self.transport.write(_too_large())
                self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))
        self._wait_for_headers()

    def on_headers_complete(self) -> None:
        self._stop_waiting_for_headers()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self.transport.flush()  # the whole answer, now
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():  # else the next request's headers are in
            self._wait_for_headers()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._stop_waiting_for_headers()
        super().connection_lost(exc)

    def _wait_for_headers(self) -> None:
        self._stop_waiting_for_headers()
        self.headers_bytes = 0
        self.headers_deadline = self.loop.call_later(HEADERS_S, self._headers_too_slow)

    def _stop_waiting_for_headers(self) -> None:
        if self.headers_deadline is not None:
            self.headers_deadline.cancel()
            self.headers_deadline = None

    def _headers_too_slow(self) -> None:
        self.headers_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
