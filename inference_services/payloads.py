"""Records from a logged or pushed inference body: a v1 body (`instances`) or a v2 body (`inputs`, JSON data).

KServe's payload logger sends each request a model receives as a CloudEvent whose body is that request;
the drift monitor and the model server's events endpoint both read such bodies through here, checked
against a contract (400 naming the field when a value is outside it). `push_key` names a push for the
online store, which writes a named push once (online_store.py).
"""

from __future__ import annotations

import hashlib
from typing import Any, List, Mapping

from kserve.protocol.infer_type import InferInput

from flowline.inference_services.request_checks import BadRequest, RecordChecker
from flowline.inference_services.v2_body import v2_body_problem
from flowline.inference_services.tensors import tensor_records

MAX_EVENT_ROWS = 10_000
IDEMPOTENCY_KEY = "idempotency-key"  # the header a client names a push with, to retry it safely


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


def push_key(headers: Mapping[str, str]) -> str | None:
    """What names a push, so that the store writes it once: its Idempotency-Key header, else a CloudEvent's
    ce-source and ce-id, which together name an event and which a broker's redelivery repeats; None when the
    push carries neither. Hashed, so a key of any length or characters is stored in 64 characters."""
    key = headers.get(IDEMPOTENCY_KEY)
    if key is not None:
        if not key.strip():
            raise BadRequest("malformed_request", f"{IDEMPOTENCY_KEY}: empty; name each push with its own key, "
                                                  f"or send no {IDEMPOTENCY_KEY}")
        named = f"key\0{key}"
    elif headers.get("ce-id") is not None:
        named = f"cloudevent\0{headers.get('ce-source', '')}\0{headers['ce-id']}"
    else:
        return None
    return hashlib.sha256(named.encode("utf-8", "surrogateescape")).hexdigest()
