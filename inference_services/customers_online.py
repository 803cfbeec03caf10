"""Scoring a customer-rows package (CLV) by customer id alone, from the customer's stored transactions.

A package trained on customer rows (its use case keeps the log's as `transaction_log`) answers, when
the server has an online store, a request that carries nothing but the customer id:
v1 `{"instances": [{"customer_id": "123"}, ...]}`, v2 one BYTES tensor named after the id column.
The customer's transactions in the store (flowline/customer_history.py), those on or before the
request's as-of date, become its customer row through `features_at`, the function training and batch
scoring use, and the model scores that row; the answer is the one a request carrying the row would get.
`:explain` takes the same requests and explains each customer's row.

The as-of date is `parameters.as_of` (YYYY-MM-DD, in v1 and v2 alike); without it, today's date in
UTC. A customer with no transaction on or before that date has no customer row, so no value: the
request is refused with a 400 naming the customer; a store holding no seeded log (it lost its data) is a 503
naming `flowline seed`. Requests carrying the customer-row features are
answered as before. New transactions reach the store through the events endpoint
(`POST /v2/models/{name}/events`, `push`), as records of the log's columns.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any, Mapping, Union

import pandas as pd
from kserve.protocol.infer_type import InferRequest

from flowline.contract import parse_datetimes
from flowline.customer_history import history_features, transaction_events
from flowline.inference_services.payloads import payload_records, push_key
from flowline.inference_services.request_checks import BadRequest, RecordChecker, describe
from flowline.inference_services.tensors import tensor_records
from flowline.online_store import Event, OnlineStore
from flowline.use_case import UseCase

AS_OF = "as_of"  # the request parameter
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def wants(use_case: UseCase, payload: Union[dict, InferRequest]) -> bool:
    """Whether `payload` asks for customers by id alone, of a customer-rows package."""
    log = use_case.transaction_log
    if log is None:
        return False
    entity = log.transactions.entity_column
    if isinstance(payload, InferRequest):
        return [tensor.name for tensor in payload.inputs] == [entity]
    instances = payload.get("instances") if isinstance(payload, dict) else None
    return (isinstance(instances, list) and bool(instances)
            and all(isinstance(record, dict) and list(record) == [entity] for record in instances))


def customer_records(store: OnlineStore, use_case: UseCase, checker: RecordChecker,
                     payload: Union[dict, InferRequest], max_batch: int) -> tuple[list[dict[str, Any]], date]:
    """The customers' rows as records (the id, then FEATURE_COLUMNS), for a request `wants` took, and the as-of
    date they describe the customers at (the answer names it).

    `checker` checks the ids as any request's ids are checked: a bad one is a 400 naming the field."""
    log = use_case.transaction_log
    entity = log.transactions.entity_column
    if isinstance(payload, InferRequest):
        where = "inputs"
        sent = checker.check_batch(tensor_records(payload.inputs, checker), where, max_batch)
    else:
        where = "instances"
        sent = checker.check_batch(payload["instances"], where, max_batch)
    as_of = _as_of(payload.parameters if isinstance(payload, InferRequest) else payload.get("parameters"))
    # Text ids as the contract reads a key (the store's are stripped); a number is looked up, and named, as it is.
    ids = [record[entity].strip() if isinstance(record[entity], str) else record[entity] for record in sent]
    rows = history_features(store, log, ids, as_of)
    for index, customer in enumerate(ids):
        if customer not in rows.index:
            raise BadRequest("unknown_customer", f"{where}[{index}].{entity}: customer {describe(customer)} has "
                                                 f"no transaction on or before {as_of} in the online store")
    return [{entity: customer, **row} for customer, row in zip(ids, rows.loc[ids].to_dict("records"))], as_of


def push(store: OnlineStore, use_case: UseCase, payload: Any, headers: Mapping[str, str]) -> dict[str, Any]:
    """Append transactions to their customers' histories: plain records of the log's columns, as a log row has
    them (a v1 body, `instances`, or a v2 body). Every record is checked against the log's contract before
    anything is written: a bad one is a 400 naming its field. A served request is no transaction, so a
    payload-logger CloudEvent is refused. A push named by an Idempotency-Key that the store took already writes
    nothing (`repeated`)."""
    log = use_case.transaction_log
    if headers.get("ce-type") is not None:
        raise BadRequest("unsupported_event", f"ce-type: {describe(headers['ce-type'])}: a request served by a "
                                              "customer-rows model is not a transaction; push the customers' "
                                              "transactions as plain records, without ce-type")
    records = payload_records(payload, transaction_checker(log))
    events = transactions_of(log, records)
    written = store.append_many(log.entity_definition, events, once=push_key(headers))
    return {"definition": log.entity_definition, "rows": len(records),
            "events": sum(map(len, events.values())) if written else 0, "repeated": not written}


def transaction_checker(log: UseCase) -> RecordChecker:
    """The log's contract for a pushed transaction: the entity, time and amount required, its other columns
    optional (ignored)."""
    spec = log.transactions
    required = [spec.entity_column, log.time_column, spec.amount_column]
    return RecordChecker(log, required, [column for column in log.columns if column not in required])


def transactions_of(log: UseCase, records: list[Mapping[str, Any]]) -> dict[str, list[Event]]:
    """Checked transaction records as store events by customer, their times parsed as ingest parses them."""
    time = log.time_column
    frame = pd.DataFrame({column: [record[column] for record in records]
                          for column in (log.transactions.entity_column, time, log.transactions.amount_column)})
    frame[time] = parse_datetimes(frame[time].str.strip(), log.columns[time].format)
    return transaction_events(frame, log)


def _as_of(parameters: Any) -> date:
    """The request's as-of date: `parameters.as_of` (YYYY-MM-DD), else today in UTC."""
    if parameters is not None and not isinstance(parameters, Mapping):
        raise BadRequest("malformed_request", "parameters: expected an object")
    value = (parameters or {}).get(AS_OF)
    if value is None:
        return datetime.now(timezone.utc).date()
    if isinstance(value, str) and ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:  # 1997-02-30
            pass
    raise BadRequest("wrong_type", f"parameters.{AS_OF}: expected a date YYYY-MM-DD, got {describe(value)}")
