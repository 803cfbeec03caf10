"""Records from a logged or pushed inference body: a v1 body (`instances`) or a v2 body (`inputs`, JSON data).

KServe's payload logger sends each request a model receives as a CloudEvent whose body is that request;
the drift monitor and the model server's events endpoint both read such bodies through here, checked
against a contract (400 naming the field when a value is outside it).
"""

from __future__ import annotations

from typing import Any, List

from kserve.protocol.infer_type import InferInput

from flowline.inference_services.request_checks import BadRequest, RecordChecker
from flowline.inference_services.v2_body import v2_body_problem
from flowline.inference_services.tensors import tensor_records

MAX_EVENT_ROWS = 10_000


def payload_records(payload: Any, checker: RecordChecker, max_rows: int = MAX_EVENT_ROWS) -> List[dict]:
    """The checked records of a v1 or v2 body; 400 naming the field when it is neither or breaks the contract."""
    if isinstance(payload, dict) and "instances" in payload:
        return checker.check_batch(payload["instances"], "instances", max_rows)
    if isinstance(payload, dict) and isinstance(payload.get("inputs"), list):
        problem = v2_body_problem(payload, require_data=True)  # a CloudEvent carries JSON, no binary tensors
        if problem:
            raise BadRequest("malformed_request", problem)
        inputs = [InferInput(t["name"], t["shape"], t["datatype"], t.get("data")) for t in payload["inputs"]]
        return checker.check_batch(tensor_records(inputs, checker), "inputs", max_rows)
    raise BadRequest("malformed_request", "data: expected a v1 body with 'instances' or a v2 body with 'inputs'")
