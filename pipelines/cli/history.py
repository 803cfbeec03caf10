"""`flowline seed`: write a transaction log's history to the online store, so that the model server scores
each customer by id alone (flowline/customer_history.py, inference_services/customers_online.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowline.pipelines.cli.common import (EXIT_ERROR, UsageError, add_runs_dir_argument, add_use_case_arguments,
                                          default_online_store, use_case)


def add_parser(commands: argparse._SubParsersAction) -> None:
    seed = commands.add_parser(
        "seed", help="write a transaction-log use case's transactions (CLV) to the online store",
        description="Read the use case's transaction log (or --source), hold it to the contract as ingest does, and "
                    "append each transaction the store does not hold yet to its customer's history (a corrected or longer "
                    "log adds only what is new). Lines that break the contract go to --quarantine with their reasons. "
                    "New transactions then reach the store through the model server's events endpoint "
                    "(POST /v2/models/NAME/events).")
    add_use_case_arguments(seed)
    seed.add_argument("--online-store", metavar="URL",
                      help="the online store: redis://HOST:PORT/DB or sqlite:///PATH.db (default: the one `flowline "
                           "serve` reads, RUNS_DIR/online-store.db)")
    add_runs_dir_argument(seed, "where the default online store is")
    seed.add_argument("--source", default="", metavar="DATA",
                      help="the log to read instead of the use case's own: a path, http(s) URL or s3://BUCKET/KEY")
    seed.add_argument("--quarantine", metavar="FILE",
                      help="the log's lines that break its contract, with their reasons, Parquet (default: "
                           "RUNS_DIR/seed-USE_CASE.quarantine.parquet)")
    seed.set_defaults(handler=_seed)


def _seed(args: argparse.Namespace) -> int:
    from flowline.contract import ContractError
    from flowline.customer_history import seed_log
    from flowline.online_store import OnlineStoreError, open_store

    chosen = use_case(args)
    if chosen.transactions is None:
        raise UsageError(f"use case {chosen.name!r} has no 'transactions' section: only a transaction log is seeded")
    url = args.online_store or default_online_store(args.runs_dir)
    try:
        store = open_store(url)
        try:
            written, result = seed_log(store, chosen, args.source)
        finally:
            store.close()
    except (ContractError, OnlineStoreError) as error:
        print(f"flowline: seed: {error}", file=sys.stderr)
        return EXIT_ERROR
    quarantine = Path(args.quarantine or Path(args.runs_dir) / f"seed-{chosen.name}.quarantine.parquet")
    quarantine.parent.mkdir(parents=True, exist_ok=True)
    result.quarantined.to_parquet(quarantine, index=False)
    where = f"{url} (namespace {chosen.entity_definition})"
    refused = f"{len(result.quarantined)} rows quarantined ({quarantine})"
    if written:
        print(f"seeded {written} new transactions of {chosen.name} into {where}; {refused}")
    else:
        print(f"{where} already holds every transaction of this log of {chosen.name}: nothing written; {refused}")
    return 0
