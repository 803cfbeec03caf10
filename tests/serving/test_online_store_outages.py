"""The model server when its online store cannot serve: a Redis that stops and comes back, a Redis that is not
there at start, and a store whose events lack an amount the package's windows sum.

One package with fixed windows that sum `amount` (features.entity_outputs), served from a private real
redis-server that each test stops and starts as it needs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis_server as redis_helpers
from payments import payments_use_case, transactions
from redis_server import redis_server_binary, running_redis
from serving_helpers import build_package

from flowline.features.feature_set import SEED_SOURCE, FeatureSet
from flowline.features.plan import default_plan
from flowline.inference_services.local_server import LOOPBACK, SERVE_COMMAND, free_port, running_server
from flowline.online_store import open_store

pytestmark = pytest.mark.xdist_group("serving")
OUTPUTS = [["recency"], ["count", 3600.0], ["sum", 86400.0, "amount"]]


@pytest.fixture(scope="module")
def summing_package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("payments-sum")
    transactions().to_csv(folder / "payments.csv", index=False)
    use_case = payments_use_case(data={"path": str(folder / "payments.csv")},
                                 features={"entity_column": "card", "amount_columns": ["amount"],
                                           "entity_outputs": OUTPUTS},
                                 tuning={"families": {"xgboost": 1}, "max_boost_rounds": 50})
    package = build_package(use_case, folder / "build", trials=1)
    assert [list(o) for o in FeatureSet.load(package / "feature_set.json").entity_features[0].outputs] == OUTPUTS
    return package


def known_card(package: Path) -> str:
    return sorted(FeatureSet.load(package / "feature_set.json").entity_features[0].history.events)[0]


def predict(client: httpx.Client, card: str) -> httpx.Response:
    return client.post("/v1/models/payments:predict",
                       json={"instances": [{"txn": "t-x", "card": card, "at": "2026-03-01T10:00:00", "amount": 42.0}]})


def test_a_redis_that_stops_gives_503s_naming_it_and_readiness_false_until_it_is_back(
        summing_package, tmp_path, monkeypatch) -> None:
    card = known_card(summing_package)
    with served_on_redis(summing_package, tmp_path) as (client, url):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert predict(client, card).status_code == 200
        _stop(url)
        for answer in (predict(client, card),
                       client.post("/v1/models/payments:explain", json={"instances": [
                           {"card": card, "at": "2026-03-01T10:00:00", "amount": 1.0}]}),
                       client.post("/v2/models/payments/events", json={"instances": [
                           {"card": card, "at": "2026-03-01T10:00:00", "amount": 1.0}]})):
            assert answer.status_code == 503, answer.text
            assert f"online store redis://127.0.0.1:{port}/0 is unreachable" in answer.json()["error"]
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/payments/ready").status_code == 503
        with empty_redis_at(url, tmp_path, monkeypatch):
            assert client.get("/v2/models/payments/ready").status_code == 200
            assert client.get("/v2/health/ready").status_code == 200
            assert predict(client, card).status_code == 200
            # The card's training history is back (and the answered row after it), not a card seen once.
            history = FeatureSet.load(summing_package / "feature_set.json").entity_features[0].history
            assert len(open_store(url).events("payments", card)) == len(history.events[card]["time"]) + 1
        metrics = client.get("/metrics").text
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log
    assert "it had lost its data: seeded payments with the training history again, and the events answered or " \
        "pushed since it was first seeded are lost" in log
    # FlowlineOnlineStoreLostData fires on it: the answered row of the first Redis is gone.
    assert 'flowline_online_store_reseeded_total{definition="payments",model_name="payments"} 1.0' in metrics


def test_a_redis_restarted_empty_between_two_requests_is_seeded_again_not_read_as_new_cards(
        summing_package, tmp_path, monkeypatch) -> None:
    """No request sees the outage: the first one after it finds the definition's history gone. It gets a 503 (its
    features cannot be computed), the owner seeds the history again at once, and the next request reads it."""
    card = known_card(summing_package)
    history = FeatureSet.load(summing_package / "feature_set.json").entity_features[0].history
    with served_on_redis(summing_package, tmp_path) as (client, url):
        assert predict(client, card).status_code == 200
        _stop(url)
        with empty_redis_at(url, tmp_path, monkeypatch):
            lost = predict(client, card)
            assert lost.status_code == 503, lost.text
            assert "holds no history of definition 'payments'" in lost.json()["error"]
            assert client.get("/v2/models/payments/ready").status_code == 200  # seeded again already
            assert predict(client, card).status_code == 200
            assert len(open_store(url).events("payments", card)) == len(history.events[card]["time"]) + 1
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log
    assert "it had lost its data: seeded payments with the training history again" in log


@contextmanager
def served_on_redis(package: Path, tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    """A server of `package` whose online store is a private Redis: (a client of the server, the Redis URL). The
    server's log is tmp_path/server.log."""
    (tmp_path / "first").mkdir()
    with running_redis(redis_server_binary(), tmp_path / "first") as url, \
            running_server([str(package)], extra_args=["--online-store", url],
                           log_path=str(tmp_path / "server.log")) as served, \
            httpx.Client(base_url=served, timeout=30) as client:
        yield client, url


@contextmanager
def empty_redis_at(url: str, tmp_path: Path, monkeypatch) -> Iterator[None]:
    """An empty Redis at the address of the stopped one at `url`: its data lost, as after a restart without
    persistence."""
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    monkeypatch.setattr(redis_helpers, "_free_port", lambda: port)
    (tmp_path / "second").mkdir()
    with running_redis(redis_server_binary(), tmp_path / "second"):
        yield


def _stop(url: str) -> None:
    """Shut the Redis at `url` down (its runner's own stop then finds it gone)."""
    import redis

    try:
        redis.Redis.from_url(url).shutdown(nosave=True)
    except redis.ConnectionError:  # it closes the connection as it goes
        pass


def test_a_server_whose_redis_is_down_at_start_says_so_in_one_line(summing_package) -> None:
    url = f"redis://{LOOPBACK}:{free_port()}/0"
    done = subprocess.run([*SERVE_COMMAND, str(summing_package), "--host", LOOPBACK, "--port", str(free_port()),
                           "--workers", "1", "--online-store", url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if not line.startswith("flowline: warning:")]
    assert errors == [f"flowline: online store {url} is unreachable: Error 111 connecting to "
                      f"{url[len('redis://'):-2]}. Connection refused."], done.stderr


def test_a_store_whose_events_lack_a_summed_amount_refuses_the_package_and_one_that_has_it_serves(
        summing_package, tmp_path) -> None:
    """The store of the definition was seeded by an earlier version: one whose events kept no amount (a package
    trained before events carried every amount column) refuses this version at start, saying why, instead of a
    500 KeyError on every known card; one seeded by a version that summed nothing but kept `amount` serves it."""
    card = known_card(summing_package)
    fitted = FeatureSet.load(summing_package / "feature_set.json")
    (tmp_path / "redis").mkdir()
    with running_redis(redis_server_binary(), tmp_path / "redis") as url:
        store = open_store(url)
        old = {key: [(time, {}) for time, _ in events]
               for key, events in fitted.entity_features[0].history.as_events().items()}
        assert store.seed("payments", SEED_SOURCE, old)
        done = subprocess.run([*SERVE_COMMAND, str(summing_package), "--host", LOOPBACK, "--port",
                               str(free_port()), "--workers", "1", "--online-store", url],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        errors = [line for line in done.stderr.splitlines() if not line.startswith("flowline: warning:")]
        assert len(errors) == 1 and "definition 'payments' carry no 'amount'" in errors[0], done.stderr

        store._client.flushdb()  # a first version that summed nothing seeds the store with its events
        train = pd.read_parquet(summing_package.parent / "train")
        use_case = payments_use_case()
        first = FeatureSet.fit(train, use_case, default_plan(train, use_case).with_generated(
            {"kind": "entity", "outputs": [["recency"]]}))
        assert first.seed(store) == {"payments": True}
        with running_server([str(summing_package)], extra_args=["--online-store", url]) as served, \
                httpx.Client(base_url=served, timeout=30) as client:
            assert predict(client, card).status_code == 200
        store.close()


def test_a_full_redis_gives_503s_saying_so_and_the_server_answers_once_it_has_room(summing_package, tmp_path) -> None:
    """A Redis at its maxmemory under `noeviction` (kustomize/online-store's) refuses every write. Each answered row
    is written as an event, so every predict and push of the definition's owner had been a 500 with a traceback,
    or a reset connection: now a 503 naming the store and what to do, and the same requests answer once it has
    room, with nothing of the refused ones written."""
    import redis

    card = known_card(summing_package)
    with served_on_redis(summing_package, tmp_path) as (client, url):
        assert predict(client, card).status_code == 200
        store = redis.Redis.from_url(url)
        stored = len(open_store(url).events("payments", card))
        store.config_set("maxmemory-policy", "noeviction")
        store.config_set("maxmemory", store.info("memory")["used_memory"] // 2)
        for answer in (predict(client, card), client.post("/v2/models/payments/events", json={"instances": [
                {"card": card, "at": "2026-03-01T10:00:00", "amount": 1.0}]})):
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"].startswith(f"online store {url} refuses writes: it is full")
        assert len(open_store(url).events("payments", card)) == stored
        store.config_set("maxmemory", 0)
        assert predict(client, card).status_code == 200
        assert len(open_store(url).events("payments", card)) == stored + 1
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log
