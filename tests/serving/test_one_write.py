"""Each answer in one write: the coalescing transport joins a loop step's writes, and a real uvicorn server
with the one-write protocol answers keep-alive, closing and large requests in full."""

import asyncio
import contextlib
import socket
import threading
import time
from typing import Iterator

import httpx
import uvicorn
from uvicorn.server import ServerState
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flowline.inference_services import one_write
from flowline.inference_services.one_write import CoalescingTransport, OneWriteHttpProtocol


class RecordingTransport:
    """What a socket's transport was asked to write, in order."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return f"info:{name}" if name == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_writes_of_one_loop_step_reach_the_socket_as_one_write_in_order():
    async def steps():
        recording = RecordingTransport()
        transport = CoalescingTransport(recording, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"ok")
        assert recording.writes == []  # still this step
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)
        return recording.writes

    assert asyncio.run(steps()) == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"next"]


def test_close_writes_what_is_pending_first_and_other_calls_reach_the_transport():
    async def steps():
        recording = RecordingTransport()
        transport = CoalescingTransport(recording, asyncio.get_running_loop())
        transport.write(b"last answer")
        transport.close()
        transport.write(b"after close")  # the transport is closing: dropped, as a closed socket would
        await asyncio.sleep(0)
        return recording, transport.get_extra_info("peername")

    recording, info = asyncio.run(steps())
    assert recording.writes == [b"last answer"] and recording.closed and info == "info:peername"


def test_the_protocol_writes_a_whole_answer_in_one_write_as_soon_as_it_is_complete():
    async def exchange():
        config = uvicorn.Config(Starlette(routes=[Route("/echo", _echo, methods=["POST"])]), lifespan="off",
                                http=OneWriteHttpProtocol)
        config.load()
        protocol = OneWriteHttpProtocol(config=config, server_state=ServerState(), app_state={})
        recording = RecordingTransport()
        protocol.connection_made(recording)
        completed = protocol.on_response_complete
        at_completion = []

        def on_response_complete():  # what reached the socket when uvicorn says the answer is complete
            completed()
            at_completion.append(list(recording.writes))

        protocol.on_response_complete = on_response_complete
        protocol.data_received(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\n\r\nhello")
        for _ in range(100):
            if at_completion:
                break
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return at_completion

    at_completion = asyncio.run(exchange())
    assert len(at_completion) == 1 and len(at_completion[0]) == 1
    head, body = at_completion[0][0].split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"content-length: 5" in head and body == b"hello"


async def _echo(request: Request) -> Response:
    size = int(request.query_params.get("size", "0"))
    body = await request.body()
    return Response(body + b"x" * size, media_type="application/octet-stream")


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """A real uvicorn server of `_echo` with OneWriteHttpProtocol, on a loopback port (yielded), in a thread."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(Starlette(routes=[Route("/echo", _echo, methods=["POST"])]), http=OneWriteHttpProtocol,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        assert config.http_protocol_class is OneWriteHttpProtocol
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_real_server_answers_keep_alive_closing_and_large_requests_in_full():
    with echo_server() as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for index in range(50):  # one kept-alive connection
            answer = client.post("/echo", content=f"request {index}".encode())
            assert answer.status_code == 200 and answer.content == f"request {index}".encode()
        large = client.post("/echo", params={"size": 3_000_000}, content=b"big")
        assert large.content == b"big" + b"x" * 3_000_000
        closing = client.post("/echo", content=b"bye", headers={"connection": "close"})
        assert closing.content == b"bye" and closing.headers["connection"] == "close"
        assert client.post("/echo", content=b"again").content == b"again"  # a new connection


def test_a_request_offering_http2_is_read_as_sent_with_its_body():
    """Java's default HttpClient and `curl --http2` offer `Upgrade: h2c` on http:// URLs; httptools took the body
    for the new protocol's bytes, so the app saw none. The offer is dropped; the next request on the connection,
    and a body that mentions an upgrade, are read as they are."""
    body = b'{"note": "upgrade: h2c"}'
    offer = (b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUPGRADE: h2c\r\n"
             b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    plain = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nagain"
    with echo_server() as port, socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(offer + plain)
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < 2 or not received.endswith(b"again"):
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
    first, second = received.split(b"HTTP/1.1 200 OK")[1:]
    assert first.endswith(b"\r\n\r\n" + body) and second.endswith(b"\r\n\r\nagain")
    assert b"upgrade" not in first.split(b"\r\n\r\n")[0].lower()  # no switch was answered


def test_a_connection_slower_than_its_headers_wait_is_closed_and_a_prompt_one_kept(monkeypatch):
    """A connection that sent nothing, or half a request's headers, was held open as long as its client kept it
    (uvicorn's keep-alive timer stops at the first byte, and a new connection has none): closed after HEADERS_S.
    One whose headers come in time is answered, and waited for again after its answer."""
    monkeypatch.setattr(one_write, "HEADERS_S", 0.5)
    request = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"

    def closed_after(connection: socket.socket, answers: int = 0) -> float:
        started, received = time.monotonic(), b""
        while chunk := connection.recv(65536):
            received += chunk
        assert received.count(b"HTTP/1.1 200 OK") == answers, received
        return time.monotonic() - started

    with echo_server() as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            assert 0.4 < closed_after(silent) < 5
        with socket.create_connection(("127.0.0.1", port), timeout=10) as half:
            half.sendall(request[:20])
            assert 0.4 < closed_after(half) < 5
        with socket.create_connection(("127.0.0.1", port), timeout=10) as prompt:
            prompt.sendall(request[:20])
            time.sleep(0.2)
            prompt.sendall(request[20:])
            time.sleep(0.4)  # past HEADERS_S from the connection's start: its headers stopped the wait
            prompt.sendall(request)  # a second request on the connection, in time after the first answer
            assert closed_after(prompt, answers=2) < 5  # answered twice, then closed once idle


def test_headers_past_their_limit_are_a_431_and_the_connection_closes_while_large_bodies_pass(monkeypatch):
    """uvicorn buffered headers without a limit: ten connections of 100 MiB of headers took a worker past its
    pod's 1 GiB. A request whose headers pass HEADERS_BYTES is refused and dropped; a body is no header."""
    monkeypatch.setattr(one_write, "HEADERS_BYTES", 4096)
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (index, b"a" * 100) for index in range(60))  # 6.4 KB
    with echo_server() as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as padded:
            padded.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n" + padding)  # the headers have not ended
            received = b""
            while chunk := padded.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert received.endswith(b'{"error": "request headers: above the limit of 4,096 bytes"}')
        body = b"b" * 200_000  # far past the headers' limit, after them: answered whole
        answer = httpx.post(f"http://127.0.0.1:{port}/echo", content=body)
        assert answer.status_code == 200 and answer.content == body
