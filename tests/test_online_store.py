"""The online store behaves the same on all three backends: embedded SQLite, in-process memory, a real Redis."""

from __future__ import annotations

import pytest

from flowline import online_store
from flowline.online_store import ONCE_SECONDS, HistoryLost, OnlineStoreError, canonical, open_store


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/online.db"
    if request.param == "memory":
        return "memory://"
    return request.getfixturevalue("redis_url")


def test_events_come_back_canonically_ordered_per_namespace_and_entity(store_url: str) -> None:
    store = open_store(store_url)
    store.append("fraud", "card-1", [(30.0, {"amount": 5.5}), (10.0, {"amount": 2.0})])
    store.append("fraud", "card-1", [(10.0, {"amount": 1.0}), (20.0, {"amount": 0.1 + 0.2})])
    store.append_many("fraud", {"card-2": [(5.0, {"amount": 7.0})], "card:3": [(1.0, {})]})
    store.append("other", "card-1", [(1.0, {"amount": 99.0})])

    assert store.events("fraud", "card-1") == [(10.0, {"amount": 1.0}), (10.0, {"amount": 2.0}),
                                               (20.0, {"amount": 0.1 + 0.2}), (30.0, {"amount": 5.5})]
    assert store.events_many("fraud", ["card-2", "card:3", "unknown", "card-2"]) == {
        "card-2": [(5.0, {"amount": 7.0})], "card:3": [(1.0, {})], "unknown": []}
    assert store.events("other", "card-1") == [(1.0, {"amount": 99.0})]
    store.close()
    if not store_url.startswith("memory"):  # a file or a server keeps the events for the next process
        assert open_store(store_url).events("fraud", "card-2") == [(5.0, {"amount": 7.0})]


def test_seeding_is_idempotent_per_source(store_url: str) -> None:
    store = open_store(store_url)
    history = {"a": [(1.0, {"amount": 1.0})], "b": [(2.0, {"amount": 2.0}), (3.0, {"amount": 3.0})]}
    assert store.seed("fraud", "v1", history) is True
    assert store.seed("fraud", "v1", history) is False
    assert store.events_many("fraud", ["a", "b"]) == history
    assert store.seed("fraud", "v2", {"a": [(4.0, {"amount": 4.0})]}) is True
    assert store.events("fraud", "a") == [(1.0, {"amount": 1.0}), (4.0, {"amount": 4.0})]
    assert store.seed("clv", "v1", history) is True  # another namespace has its own seeds


def test_a_keyed_write_is_written_once_per_namespace_and_key(store_url: str, monkeypatch) -> None:
    """A retried push (its Idempotency-Key) or an event delivered twice (its CloudEvent id) adds nothing again,
    while the key is remembered; another key, namespace or an unkeyed write is written."""
    store = open_store(store_url)
    batch = {"card-1": [(1.0, {"amount": 5.0})], "card-2": [(2.0, {"amount": 1.0})]}
    assert store.append_many("fraud", batch, once="push-1") is True
    assert store.append_many("fraud", batch, once="push-1") is False
    assert store.events_many("fraud", ["card-1", "card-2"]) == batch
    assert store.append_many("fraud", {"card-1": [(3.0, {"amount": 2.0})]}, once="push-2") is True
    assert store.append_many("other", batch, once="push-1") is True  # keys are per namespace
    assert store.append_many("fraud", {"card-1": [(3.0, {"amount": 2.0})]}) is True  # no key: always written
    assert len(store.events("fraud", "card-1")) == 3
    assert not store.is_seeded("fraud")  # a key is no seed: a pushed batch is no history
    if store_url.startswith("redis"):  # the server forgets the key itself
        assert 0 < store._client.ttl("flowline:once:fraud:push-1") <= ONCE_SECONDS
    else:
        later = online_store.time.time() + ONCE_SECONDS + 1
        monkeypatch.setattr(online_store.time, "time", lambda: later)
        assert store.append_many("fraud", {"card-2": [(4.0, {"amount": 1.0})]}, once="push-1") is True
        assert len(store.events("fraud", "card-2")) == 2
    store.close()


def test_a_read_of_a_history_never_seeded_or_lost_since_raises_history_lost(store_url: str) -> None:
    """Served entity features read with `seeded=True`: a store without the definition's seed (a Redis restarted
    without its data between two requests) must not answer every entity as one never seen."""
    store = open_store(store_url)
    store.append("fraud", "a", [(1.0, {"amount": 1.0})])  # served events alone are not a history
    with pytest.raises(HistoryLost, match="holds no history of definition 'fraud'"):
        store.events_many("fraud", ["a"], seeded=True)
    assert not store.is_seeded("fraud")
    assert store.seed("fraud", "v1", {}) is True  # an empty history is a history
    assert store.events_many("fraud", ["a", "b"], seeded=True) == {"a": [(1.0, {"amount": 1.0})], "b": []}
    assert store.is_seeded("fraud") and not store.is_seeded("other")
    if store_url.startswith("redis"):
        store._client.flushdb()  # what a restart without persistence leaves
        with pytest.raises(HistoryLost):
            store.events_many("fraud", ["a"], seeded=True)


@pytest.mark.parametrize("entity, event, field", [
    ("card-1", (float("nan"), {"amount": 1.0}), "time"),
    ("card-1", ("yesterday", {"amount": 1.0}), "time"),
    ("card-1", (1.0, {"amount": float("inf")}), "'amount'"),
    ("card-1", (1.0, {"amount": "12"}), "'amount'"),
    ("", (1.0, {"amount": 1.0}), "entity"),
])
def test_a_bad_event_names_its_field_and_writes_nothing(store_url: str, entity: str, event: tuple,
                                                        field: str) -> None:
    store = open_store(store_url)
    with pytest.raises(OnlineStoreError, match=field):
        store.append_many("fraud", {"good": [(1.0, {"amount": 1.0})], entity: [event]})
    assert store.events_many("fraud", ["good", "card-1"]) == {"good": [], "card-1": []}


def test_canonical_order_makes_sums_independent_of_arrival() -> None:
    events = [(1.0, {"amount": 0.1}), (1.0, {"amount": 1e16}), (1.0, {"amount": -1e16}), (0.5, {"amount": 0.3})]
    assert canonical(events) == canonical(events[::-1]) == [
        (0.5, {"amount": 0.3}), (1.0, {"amount": -1e16}), (1.0, {"amount": 0.1}), (1.0, {"amount": 1e16})]


@pytest.mark.parametrize("url", ["postgres://db/1", "sqlite://", "memory://x"])
def test_an_unknown_store_url_says_what_is_expected(url: str) -> None:
    with pytest.raises(OnlineStoreError, match="expected sqlite:///path.db|give a file"):
        open_store(url)


def test_erasing_an_entity_removes_its_events_and_nothing_else(store_url: str) -> None:
    store = open_store(store_url)
    store.append_many("clv", {"123": [(1.0, {"amount": 5.0}), (2.0, {"amount": 6.0})], "456": [(1.0, {"amount": 1.0})]})
    store.append("other", "123", [(1.0, {"amount": 9.0})])
    assert store.erase("clv", "123") == 2
    assert store.events_many("clv", ["123", "456"]) == {"123": [], "456": [(1.0, {"amount": 1.0})]}
    assert store.events("other", "123") == [(1.0, {"amount": 9.0})]  # another definition's state is its own
    assert store.erase("clv", "123") == 0
    store.close()


def test_an_erased_entity_is_not_seeded_back_from_a_history_fitted_before_the_erasure(store_url: str) -> None:
    """A package trained before an erasure still holds the entity's events: an empty store seeding from it must
    leave them out; events served after the erasure are new, and kept."""
    store = open_store(store_url)
    store.append("clv", "123", [(1.0, {"amount": 5.0})])
    store.erase("clv", "123")
    fitted = {"123": [(1.0, {"amount": 5.0})], "456": [(1.0, {"amount": 1.0})]}
    assert store.seed("clv", "featureset-v1", fitted)
    assert store.events_many("clv", ["123", "456"]) == {"123": [], "456": [(1.0, {"amount": 1.0})]}
    assert store.seed("other", "featureset-v1", fitted)  # erased in one definition only
    assert store.events("other", "123") == [(1.0, {"amount": 5.0})]
    store.append("clv", "123", [(9.0, {"amount": 2.0})])  # a request after the erasure
    assert store.events("clv", "123") == [(9.0, {"amount": 2.0})]
    store.close()
