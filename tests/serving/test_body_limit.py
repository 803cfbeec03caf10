"""Refused before a model sees them: a body above `flowline serve --max-body-mb` is a 413, none of it kept,
declared or chunked, on every route, and a model not served here a 404, not an ERROR with a traceback in the
log; and the server goes on answering."""

import gzip
import http.client
import json
import socket
import threading
import time
import zlib
from urllib.parse import urlparse

import httpx
import pytest

from bad_bodies import V1, V2, v1, v2, v2_record
from flowline.inference_services.local_server import running_server
from flowline.package.format import verify
from serving_helpers import records_of, samples

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

LIMIT_MB = 0.01
LIMIT = int(LIMIT_MB * 2**20)


@pytest.fixture(scope="module")
def server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("body-limit") / "server.log"


@pytest.fixture(scope="module")
def small_server(churn_package, server_log):
    with running_server([f"churn={churn_package}"], workers=2, log_path=str(server_log),
                        extra_args=["--max-body-mb", str(LIMIT_MB)]) as url:
        yield url


@pytest.fixture(scope="module")
def record(churn_test_rows) -> dict:
    return records_of(churn_test_rows.head(1))[0]


def refused(text: str) -> bool:
    return f"above the server's limit of {LIMIT:,} bytes" in json.loads(text)["error"]


def count(metrics: str, reason: str = "body_too_large") -> float:
    line = next((line for line in metrics.splitlines() if line.startswith(
        f'flowline_invalid_inputs_total{{model_name="churn",reason="{reason}"}}')), " 0")
    return float(line.rsplit(" ", 1)[1])


def test_a_body_within_the_limit_is_answered(small_server, record):
    body = v1(record)
    assert len(body) < LIMIT
    response = httpx.post(small_server + V1, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", [V1, V2, "/v1/models/churn:explain", "/v2/models/churn/events", "/v1/models/x:predict"])
def test_a_declared_body_above_the_limit_is_refused_on_its_headers(small_server, record, path):
    body = v1(*[record] * 40)  # refused on its length, whatever it holds
    assert len(body) > LIMIT
    response = httpx.post(small_server + path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text
    assert refused(response.text)
    assert f"{len(body):,} bytes" in response.json()["error"]


def test_a_chunked_body_is_refused_once_it_passes_the_limit_and_counted(small_server, record):
    before = count(httpx.get(small_server + "/metrics").text)
    address = urlparse(small_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    chunks = iter([v1(*[record] * 10)[:-1]] + [b" " * 4096] * 4)  # no Content-Length: sent chunked
    connection.request("POST", V1, body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413
    assert refused(response.read().decode())
    connection.close()
    assert count(httpx.get(small_server + "/metrics").text) == before + 1


def test_a_refused_body_is_counted_as_a_request_as_well_as_an_invalid_input(small_server, churn_package, record):
    """The invalid-input ratio divides flowline_invalid_inputs_total by flowline_http_requests_total: a 413 counted
    in the first only made the ratio pass 100 %, or left it without a denominator when every request was too large.
    Counted as the request counter counts other refusals: under the model and the version it serves, a name not
    served here under none."""
    champion = verify(churn_package)["version"]
    too_large = v1(*[record] * 40)
    key = lambda name, version, code: (("code", code), ("model_name", name), ("model_version", version))  # noqa: E731
    before = samples(small_server, "flowline_http_requests_total")
    for path in (V1, V2, "/v1/models/churn:explain", "/v1/models/nope:predict"):
        assert httpx.post(small_server + path, content=too_large).status_code == 413
    assert httpx.post(small_server + V1, content=b"not gzip", headers={"Content-Encoding": "gzip"}).status_code == 400
    assert httpx.post(small_server + V1, content=b"x", headers={"Content-Encoding": "br"}).status_code == 415
    assert httpx.get(small_server + V1).status_code in (404, 405)  # no model request: not counted as one
    after = samples(small_server, "flowline_http_requests_total")
    counted = {labels: value - before.get(labels, 0) for labels, value in after.items() if value != before.get(labels)}
    assert counted == {key("churn", champion, "413"): 3, key("", "", "413"): 1, key("churn", champion, "400"): 1,
                       key("churn", champion, "415"): 1}


def test_a_chunked_body_within_the_limit_is_answered(small_server, record):
    address = urlparse(small_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    body = v1(record)
    connection.request("POST", V1, body=iter([body[:100], body[100:]]), headers={"Content-Type": "application/json"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert len(json.loads(response.read())["predictions"]) == 1


def test_what_a_client_waits_includes_the_wait_for_its_body_and_leaves_explanations_out(small_server, record):
    """flowline_http_request_duration_seconds starts when the request's headers reach the server: a body that
    takes 0.5 s to arrive is waited for, though the model takes milliseconds. An explanation is not a prediction."""
    def totals() -> tuple[float, float, float]:
        waited = samples(small_server, "flowline_http_request_duration_seconds_sum")
        counted = samples(small_server, "flowline_http_request_duration_seconds_count")
        in_model = samples(small_server, "flowline_request_latency_seconds_sum")
        return sum(waited.values()), sum(counted.values()), sum(in_model.values())

    def slow_body(body: bytes):
        yield body[:100]
        time.sleep(0.5)
        yield body[100:]

    before = totals()
    address = urlparse(small_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    connection.request("POST", V1, body=slow_body(v1(record)), headers={"Content-Type": "application/json"},
                       encode_chunked=True)
    assert connection.getresponse().status == 200
    assert httpx.post(small_server + "/v1/models/churn:explain", content=v1(record)).status_code == 200
    waited, counted, in_model = (after - start for after, start in zip(totals(), before))
    assert counted == 1 and waited >= 0.5 and in_model < 0.25, (waited, counted, in_model)


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_compressed_body_is_answered_as_the_plain_one(small_server, record, encoding, compress):
    plain = httpx.post(small_server + V1, content=v1(record), headers={"Content-Type": "application/json"})
    sent = httpx.post(small_server + V1, content=compress(v1(record)),
                      headers={"Content-Type": "application/json", "Content-Encoding": encoding})
    assert sent.status_code == 200, sent.text
    assert sent.json()["predictions"] == plain.json()["predictions"]


def test_gzip_members_raw_deflate_and_an_identity_listed_too_are_read_as_clients_send_them(small_server, record):
    plain = httpx.post(small_server + V1, content=v1(record), headers={"Content-Type": "application/json"}).json()
    body = v1(record)
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for content, encoding in [(gzip.compress(body[:40]) + gzip.compress(body[40:]), "gzip"),  # two members
                              (raw.compress(body) + raw.flush(), "deflate"),  # raw, without zlib's header
                              (gzip.compress(body), "gzip, identity"), (gzip.compress(body), "X-GZIP")]:
        sent = httpx.post(small_server + V1, content=content, headers={"Content-Encoding": encoding})
        assert sent.status_code == 200, (encoding, sent.text)
        assert sent.json()["predictions"] == plain["predictions"]


def test_a_small_body_that_decompresses_above_the_limit_is_refused(small_server, record):
    bomb = gzip.compress(v1(record)[:-2] + b" " * (LIMIT * 50) + b"]}")
    assert len(bomb) < LIMIT
    response = httpx.post(small_server + V1, content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413 and refused(response.text)


@pytest.mark.parametrize("encoding, body, named", [
    ("br", b"anything", "Content-Encoding: br is not accepted"),
    ("gzip", b'{"instances": []}', "body: not gzip data"),
    ("gzip", b"truncated", "body: its gzip data ends early"),
    ("gzip", b"trailing", "body: 5 bytes after its gzip data"),
    ("gzip, br", b"anything", "Content-Encoding: gzip, br is not accepted"),
])
def test_a_body_not_as_its_encoding_says_is_a_4xx_naming_it(small_server, record, encoding, body, named):
    body = {b"truncated": gzip.compress(v1(record))[:-20], b"trailing": gzip.compress(v1(record)) + b"extra"}.get(
        body, body)
    before = count(httpx.get(small_server + "/metrics").text, "body_encoding")
    response = httpx.post(small_server + V1, content=body, headers={"Content-Encoding": encoding})
    assert response.status_code == (415 if "br" in encoding else 400), response.text
    assert named in response.json()["error"]
    assert count(httpx.get(small_server + "/metrics").text, "body_encoding") == before + 1


def test_a_transfer_coding_other_than_chunked_is_a_501_naming_it(small_server, record):
    """`Transfer-Encoding: gzip, chunked` was read as plain chunked: its gzip bytes parsed as JSON, a 400 that
    named the JSON, not the coding the server does not decode."""
    address = urlparse(small_server)
    data = gzip.compress(v1(record))
    before = count(httpx.get(small_server + "/metrics").text, "body_encoding")
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(f"POST {V1} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Transfer-Encoding: gzip, chunked\r\n\r\n{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    assert answer.startswith(b"HTTP/1.1 501"), answer
    assert b"Transfer-Encoding: gzip, chunked is not accepted" in answer
    assert count(httpx.get(small_server + "/metrics").text, "body_encoding") == before + 1


def test_the_server_answers_after_the_refusals(small_server, record):
    response = httpx.post(small_server + V2, content=v2(*v2_record(record)), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_a_model_not_served_here_is_a_404_not_an_error_in_the_log(small_server, record, server_log):
    for method, path in [("POST", "/v1/models/nope:predict"), ("POST", "/v2/models/nope/infer"),
                         ("GET", "/v2/models/nope"), ("POST", "/v1/models/nope:explain")]:
        response = httpx.request(method, small_server + path, json={"instances": [record]})
        assert response.status_code == 404, (path, response.text)
        assert "nope" in response.json()["error"]
    logged = server_log.read_text()
    assert "Traceback" not in logged and " ERROR " not in logged  # KServe's handler logged an ERROR with one


def test_bodies_past_what_a_worker_holds_at_once_are_a_503_to_retry_and_the_rest_go_on(churn_package, record):
    """Each body is under the cap, but a worker holds IN_FLIGHT_BODIES of the cap's size at once: 48 of 15.5 MiB
    had taken one worker to 1.1 GB. A chunked body counts at the cap until it is read; a closed one no longer."""
    from flowline.inference_services.body_limit import IN_FLIGHT_BODIES

    with running_server([f"churn={churn_package}"], workers=1, extra_args=["--max-body-mb", str(LIMIT_MB)]) as url:
        address = urlparse(url)
        held = []
        for _ in range(IN_FLIGHT_BODIES):  # bodies begun and not finished: each may still grow to the cap
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
            connection.putrequest("POST", V1)
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            held.append(connection)
        time.sleep(0.5)  # each read up to its first chunk
        busy = httpx.post(url + V1, content=v1(record), headers={"Content-Type": "application/json"}, timeout=10)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert json.loads(busy.text)["error"].startswith(f"the server is busy: {IN_FLIGHT_BODIES * LIMIT:,} bytes of "
                                                         "request bodies in flight")
        assert httpx.get(url + "/v2/health/ready").status_code == 200  # a request without a body holds nothing
        for connection in held:
            connection.close()
        time.sleep(0.5)
        answered = httpx.post(url + V1, content=v1(record), headers={"Content-Type": "application/json"}, timeout=10)
        assert answered.status_code == 200, answered.text
        assert samples(url, "flowline_http_requests_total")[(("code", "503"), ("model_name", "churn"),
                                                            ("model_version", verify(churn_package)["version"]))] == 1


def test_a_stalled_body_is_a_408_that_frees_its_connection_and_a_slow_one_is_read_to_the_end(small_server, record):
    """A request whose body stops arriving held its connection as long as the client kept it open (200 of them held
    200 descriptors) and a stopping server for its whole grace period. Now, after BODY_IDLE_S without a byte, a 408
    naming the body, and the connection closed; a client that keeps sending, each part sooner than that, is read
    to the end however long the whole takes."""
    from flowline.inference_services.body_limit import BODY_IDLE_S

    address = urlparse(small_server)
    body = v1(record)
    answers = {}

    def stalled() -> None:
        with socket.create_connection((address.hostname, address.port), timeout=BODY_IDLE_S + 20) as sock:
            sock.sendall(f"POST {V1} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:50])
            started, answer = time.monotonic(), b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
            answers["stalled"] = (time.monotonic() - started, answer.decode())

    def dribbled():
        parts = [body[i:i + len(body) // 6 + 1] for i in range(0, len(body), len(body) // 6 + 1)]
        for index, part in enumerate(parts):
            if index:
                time.sleep(BODY_IDLE_S * 1.2 / (len(parts) - 1))  # the whole takes longer than BODY_IDLE_S
            yield part

    def slow() -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=BODY_IDLE_S + 20)
        connection.request("POST", V1, body=dribbled(), headers={"Content-Type": "application/json"},
                           encode_chunked=True)
        response = connection.getresponse()
        answers["slow"] = (response.status, response.read().decode())

    threads = [threading.Thread(target=stalled), threading.Thread(target=slow)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    assert httpx.post(small_server + V1, content=body, headers={"Content-Type": "application/json"}).status_code == 200
    for thread in threads:
        thread.join(BODY_IDLE_S + 30)
    waited, answer = answers["stalled"]
    assert answer.startswith("HTTP/1.1 408 ") and f"body: no more of it arrived for {BODY_IDLE_S:g} s" in answer
    # after the idle time, not at once (the client's clock starts after its send returns: up to a moment late)
    assert BODY_IDLE_S - 1 <= waited < BODY_IDLE_S + 5, waited
    status, text = answers["slow"]
    assert status == 200 and len(json.loads(text)["predictions"]) == 1, text
