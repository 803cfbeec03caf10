"""`make bench`: v2 requests whose entity features come from a loopback Redis, against the same requests without.

    python tests/benchmark/online_bench.py --out FILE [--redis-server PATH] [--connections 16] [--seconds 20]

Two packages of a fraud-style use case, built in-process from a synthetic card-payment log (tests/payments.py):
- `entity`: the card's recency and rolling counts and sums, read from Redis at request time (one lookup per
  request), each answered row then appended to Redis (the use case owns its definition);
- `plain`: the same use case with the card and time as ids only, so no entity features.
Each request is one row for a random card at a later time (built per request by a wrk Lua script), the same
bodies for both, at 16 connections: throughput and p99 of each, their ratio, and the store lookup's own p99
(`events_many` of one card, timed in this process against the same Redis after the run). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "serving")]  # the tests' log, use case, builder, Redis

from payments import payments_use_case, transactions  # noqa: E402
from redis_server import redis_server_binary, running_redis  # noqa: E402
from serving_bench import wrk_throughput  # noqa: E402
from serving_helpers import build_package  # noqa: E402

from flowline.features.feature_set import FeatureSet  # noqa: E402
from flowline.inference_services.local_server import running_server  # noqa: E402
from flowline.online_store import open_store  # noqa: E402

CARDS = 300
LOOKUPS = 5000
# One row per request: a random card, a time after the whole log (one second per request), an amount.
REQUEST_LUA = """
local sent = 0
local start = os.time({year = 2026, month = 4, day = 1, hour = 0})
request = function()
  sent = sent + 1
  local card = "c" .. math.random(0, %d)
  local at = os.date("!%%Y-%%m-%%dT%%H:%%M:%%S", start + sent)
  local body = '{"inputs": [{"name": "card", "shape": [1], "datatype": "BYTES", "data": ["' .. card .. '"]}, '
    .. '{"name": "at", "shape": [1], "datatype": "BYTES", "data": ["' .. at .. '"]}, '
    .. '{"name": "amount", "shape": [1], "datatype": "FP64", "data": [' .. (5 + sent %% 200) .. ']}]}'
  return wrk.format(nil, nil, nil, body)
end
""" % (CARDS - 1)
FIRST_BODY = {"inputs": [{"name": "card", "shape": [1], "datatype": "BYTES", "data": ["c0"]},
                         {"name": "at", "shape": [1], "datatype": "BYTES", "data": ["2026-04-01T00:00:00"]},
                         {"name": "amount", "shape": [1], "datatype": "FP64", "data": [5.0]}]}


def packages(folder: Path) -> dict[str, Path]:
    """The `entity` and `plain` packages, built from one log."""
    log = folder / "payments.csv"
    transactions(cards=CARDS).to_csv(log, index=False)
    quick = {"data": {"path": str(log)}, "tuning": {"families": {"xgboost": 1}, "max_boost_rounds": 100}}
    built = {"entity": build_package(payments_use_case(**quick), folder / "entity", trials=1),
             "plain": build_package(payments_use_case(**quick, id_columns=["txn", "card", "at"], features={}),
                                    folder / "plain", trials=1)}
    if not FeatureSet.load(built["entity"] / "feature_set.json").entity_features:
        sys.exit("bench: feature engineering kept no entity feature for the entity package")
    return built


def lookup_p99_ms(url: str) -> dict:
    store = open_store(url)
    cards = [f"c{i}" for i in np.random.default_rng(0).integers(0, CARDS, LOOKUPS)]
    timings = []
    for card in cards:
        started = time.perf_counter()
        store.events_many("payments", [card])
        timings.append((time.perf_counter() - started) * 1e3)
    events = sum(len(store.events("payments", f"c{i}")) for i in range(CARDS))
    store.close()
    return {"lookups": LOOKUPS, "p50_ms": float(np.percentile(timings, 50)),
            "p99_ms": float(np.percentile(timings, 99)), "events_per_card": events / CARDS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--redis-server", help="the redis-server binary (default: as the tests find it)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--timeout", type=int, default=2, help="seconds after which wrk counts a request failed")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(FIRST_BODY).encode()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        built = packages(Path(scratch))
        with running_redis(args.redis_server or redis_server_binary(), Path(scratch)) as redis_url:
            for name, package in built.items():
                print(f"bench: {name}: {args.connections} connections for {args.seconds} s", flush=True)
                with running_server([f"payments={package}"], extra_args=["--online-store", redis_url],
                                    log_path=str(args.out.parent / f"online-{name}.log")) as url:
                    port = int(url.rsplit(":", 1)[1])
                    results[name] = wrk_throughput(port, "/v2/models/payments/infer", body, args.connections,
                                                   args.seconds, request_lua=REQUEST_LUA, timeout_s=args.timeout)
                print(f"bench: {name}: {json.dumps(results[name])}", flush=True)
            lookup = lookup_p99_ms(redis_url)
    entity, plain = results["entity"], results["plain"]
    report = {
        "benchmark": "single-row v2 with entity features from loopback Redis, against the same rows without",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"connections": args.connections, "seconds": args.seconds, "cards": CARDS},
        "peers": results,
        "store_lookup": lookup,
        "ratios": {"throughput_entity_vs_plain": entity["requests_per_second"] / plain["requests_per_second"],
                   f"p99_at_{args.connections}_entity_vs_plain": entity["p99_ms"] / plain["p99_ms"]},
        "goal_store_lookup_p99_under_1ms": lookup["p99_ms"] < 1.0,
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(f"entity features: {entity['requests_per_second']:,.0f} req/s, p99 {entity['p99_ms']:.1f} ms; "
          f"without: {plain['requests_per_second']:,.0f} req/s, p99 {plain['p99_ms']:.1f} ms; "
          f"ratio {report['ratios']['throughput_entity_vs_plain']:.2f}; store lookup p99 "
          f"{lookup['p99_ms']:.3f} ms ({lookup['events_per_card']:.0f} events per card); report: {args.out}")


if __name__ == "__main__":
    main()
