"""A transaction log's history in the online store: what lets a customer be scored by id alone.

Each transaction of a transaction-log use case (`transactions`) is one event of its entity in the
online store (online_store.py), under the namespace `use_case.entity_definition`: its time in seconds
since the epoch (a time without an offset is UTC, as ingest reads it) and {amount column: amount}.
Read back, the events are the same log: `daily_purchases` and `features_at` (customer_rows.py) give
an entity exactly the features that training and batch scoring give it from the whole log, as of
any date. Times keep microsecond precision.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from flowline.contract import ContractResult, apply_contract, enforce_bad_fraction, read_use_case_table
from flowline.customer_rows import daily_purchases, features_at
from flowline.online_store import Event, HistoryLost, OnlineStore
from flowline.use_case import TransactionsSpec, UseCase

EPOCH = pd.Timestamp("1970-01-01")  # event times are seconds since then, UTC


def _transactions_of(use_case: UseCase) -> TransactionsSpec:
    """The use case's `transactions`; ValueError naming it when it is not a transaction log."""
    if use_case.transactions is None:
        raise ValueError(f"use case {use_case.name!r} has no 'transactions' section: it is not a transaction log")
    return use_case.transactions


def transaction_events(log: pd.DataFrame, use_case: UseCase) -> dict[str, list[Event]]:
    """The log's transactions as store events, by entity (as text), in the log's order.

    `log` holds the use case's entity, time (datetime, naive UTC, as ingest gives it) and amount columns."""
    spec = _transactions_of(use_case)
    seconds = (pd.to_datetime(log[use_case.time_column]) - EPOCH).dt.total_seconds().to_numpy()
    amounts = log[spec.amount_column].astype("float64").to_numpy()
    events: dict[str, list[Event]] = {}
    for entity, at, amount in zip(log[spec.entity_column].astype(str), seconds, amounts):
        events.setdefault(entity, []).append((float(at), {spec.amount_column: float(amount)}))
    return events


def seed_history(store: OnlineStore, log: pd.DataFrame, use_case: UseCase, source: str) -> int:
    """Write the transactions of `log` that `store` does not hold yet to their entities' histories, once per
    `source` (say, the log's sha256): the number written, 0 when that source was seeded already. A log seeded
    again with lines corrected or appended adds only what is new, counting repeats: an entity's two equal
    transactions in the log, against one in the store, write one."""
    namespace = use_case.entity_definition
    events = transaction_events(log, use_case)
    held = store.events_many(namespace, list(events))
    new = {entity: _beyond(batch, held[entity]) for entity, batch in events.items()}
    return sum(map(len, new.values())) if store.seed(namespace, source, new) else 0


def _beyond(events: list[Event], held: list[Event]) -> list[Event]:
    """`events` less as many of each as `held` has (a multiset difference)."""
    remaining = Counter(_key(event) for event in held)
    new = []
    for event in events:
        if remaining[_key(event)]:
            remaining[_key(event)] -= 1
        else:
            new.append(event)
    return new


def _key(event: Event) -> tuple:
    at, amounts = event
    return at, tuple(sorted(amounts.items()))


def seed_log(store: OnlineStore, use_case: UseCase, source: str = "") -> tuple[int, ContractResult]:
    """Read the use case's log (or `source`) and hold it to the contract as ingest does (refused above its
    max_bad_fraction), then seed the store with its transactions, once per log content (its sha256):
    (transactions written, the contract's result, whose quarantine holds the refused lines with reasons)."""
    table = read_use_case_table(use_case, source)
    result = apply_contract(table.frame, use_case, table.malformed)
    enforce_bad_fraction(result, use_case)
    return seed_history(store, result.kept, use_case, source=f"log:{table.sha256}"), result


def history_log(events: Mapping[str, Sequence[Event]], use_case: UseCase) -> pd.DataFrame:
    """Entities' stored events back to a log of (entity, time, amount) in the use case's column names."""
    spec = _transactions_of(use_case)
    entities = [entity for entity, entity_events in events.items() for _ in entity_events]
    seconds = np.array([at for entity_events in events.values() for at, _ in entity_events], dtype="float64")
    amounts = np.array([amounts[spec.amount_column] for entity_events in events.values()
                        for _, amounts in entity_events], dtype="float64")
    times = (EPOCH + pd.to_timedelta(seconds, unit="s")).round("us")
    return pd.DataFrame({spec.entity_column: pd.Series(entities, dtype=object), use_case.time_column: times,
                         spec.amount_column: amounts})


def history_features(store: OnlineStore, use_case: UseCase, entities: Sequence[str], as_of: date) -> pd.DataFrame:
    """The customer-row features (FEATURE_COLUMNS) of `entities` as of `as_of`, from their stored
    transactions on or before that day, indexed by entity: exactly `features_at` on the whole log.
    An entity with no transaction by then has no row. A store holding no seeded log of the use case raises
    HistoryLost: it lost its data or was never seeded, and every customer would read as new, or as only the
    transactions pushed since."""
    namespace = use_case.entity_definition
    try:
        events = store.events_many(namespace, list(dict.fromkeys(entities)), seeded=True)
    except HistoryLost:
        raise HistoryLost(store.url, namespace, f"the log was never seeded; `flowline seed {use_case.name}` seeds "
                                                f"it, adding only the transactions the store lacks") from None
    return features_at(daily_purchases(history_log(events, use_case), use_case), as_of)
