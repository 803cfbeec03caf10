"""The drift monitor's lean route reads events and builds replies as KServe's v1 route does, held against KServe's
own functions (the live comparison of both routes is in test_drift_monitor.py)."""

import gzip

import pytest
from kserve.model_repository import ModelRepository
from kserve.utils.utils import create_response_cloudevent

from flowline.inference_services.event_route import DriftEventRoute, binary_event, event_data
from flowline.inference_services.request_checks import BadRequest
from flowline.inference_services.server import FlowlineDataPlane

HEADERS = {"ce-specversion": "1.0", "ce-type": "org.kubeflow.serving.inference.request", "ce-id": "7",
           "ce-source": "http://localhost:9081/", "ce-inferenceservicename": "churn", "ce-endpoint": "default",
           "content-type": "application/json"}
BODIES = [b'{"instances": [{"tenure": 1}]}', b'{"inputs": []}', b"[1, 2]", b'"text"', b"3", b"\xff\xfe{", b"{",
          b'{"instances": [1]} trailing', b"\xef\xbb\xbf{}", b""]


def kserve_data(body: bytes) -> object:
    """What KServe's v1 route hands the model for a binary-mode event, or the BadRequest it ends in."""
    try:
        return FlowlineDataPlane(model_registry=ModelRepository()).decode(body, dict(HEADERS))[0]
    except BadRequest as error:
        return error


@pytest.mark.parametrize("body", BODIES)
def test_event_data_is_what_kserves_route_reads_and_a_body_that_is_not_json_a_400_saying_where(body):
    """KServe's route hands the monitor a body that is not JSON as bytes, which it refused saying only that it
    expected v1 or v2 data (a NaN in a record too): the route says where the JSON breaks."""
    expected = kserve_data(body)
    if isinstance(expected, BadRequest):
        with pytest.raises(BadRequest, match="body: cannot decode the request"):
            event_data(body)
        assert "body: cannot decode the request" in str(expected)
    elif isinstance(expected, bytes):
        with pytest.raises(BadRequest, match=r"body: malformed JSON: .*(line|char|byte) \d+"):
            event_data(body)
    else:
        assert event_data(body) == expected


@pytest.mark.parametrize("drop, change, named", [
    ("ce-id", {}, "ce-id: a binary-mode CloudEvent carries ce-specversion, ce-id, ce-source, ce-type; this one lacks ce-id"),
    ("ce-type", {}, "this one lacks ce-type"),
    (None, {"ce-contenttype": "application/json"}, "ce-contenttype: not an attribute of CloudEvents 0.3 or 1.0"),
])
def test_ce_headers_that_make_no_binary_mode_event_are_refused_naming_the_attribute(drop, change, named):
    """KServe's route took an event without ce-id into the window, and answered a ce-contenttype with a Python
    error (the drift audit). An event of spec version 0.3 is one, which KServe's route reads."""
    from flowline.inference_services.event_route import event_problem

    headers = {**{k: v for k, v in HEADERS.items() if k != drop}, **change}
    assert not binary_event(headers)
    assert named in str(event_problem(headers))
    assert event_problem({**HEADERS, "ce-specversion": "0.3"}) is None


def test_a_logged_request_sent_gzip_compressed_is_read_as_the_plain_one():
    """The payload logger forwards a body as the model received it, without its Content-Encoding."""
    body = b'{"instances": [{"tenure": 1}]}'
    assert event_data(gzip.compress(body)) == event_data(body)
    with pytest.raises(BadRequest, match="body: decompresses to more than the server's limit of 1,000 bytes"):
        event_data(gzip.compress(b" " * 2000 + body), max_bytes=1000)
    with pytest.raises(BadRequest, match="body: its gzip data ends early"):
        event_data(gzip.compress(body)[:-12])


def test_only_cloudevents_1_0_in_binary_mode_take_the_lean_route():
    assert binary_event(HEADERS)
    assert not binary_event({**HEADERS, "ce-specversion": "0.3"})
    assert not binary_event({**HEADERS, "ce-contenttype": "application/json"})  # KServe decodes data by it
    assert not binary_event({k: v for k, v in HEADERS.items() if k != "ce-id"})
    assert not binary_event({"content-type": "application/cloudevents+json"})  # structured mode


@pytest.mark.parametrize("merge", ["false", "true"])
@pytest.mark.parametrize("reply", [{}, {"CE_TYPE": "dev.flowline.drift.tested", "CE_SOURCE": "monitor"}])
def test_the_reply_carries_kserves_attributes(monkeypatch, merge, reply):
    monkeypatch.setenv("CE_MERGE", merge)
    for name, value in reply.items():
        monkeypatch.setenv(name, value)
    attributes = FlowlineDataPlane.get_binary_cloudevent(b"{}", dict(HEADERS))._get_attributes()
    expected, _ = create_response_cloudevent("churn-drift", {}, dict(attributes), binary_event=True)
    route = DriftEventRoute(None, {"churn-drift": None}, None)
    ours = route._reply_headers("churn-drift", HEADERS)
    assert ours.keys() == expected.keys() - {"content-type"}  # the route sets content-type with the body
    assert {k: v for k, v in ours.items() if k not in ("ce-id", "ce-time")} == \
        {k: v for k, v in expected.items() if k not in ("ce-id", "ce-time", "content-type")}
    assert ours["ce-id"] != HEADERS["ce-id"] and ours["ce-time"][:4] == expected["ce-time"][:4]
