"""The online store: each entity's events, which entity features read at request time and served events update.

An event is (time in seconds, {amount column: value}). Events live under a namespace, the name of an
entity-feature definition (`UseCase.entity_definition`), so two models that share a definition share one
state. Three backends behave the same (tests/test_online_store.py runs one test on all three):

- `sqlite:///path/to/store.db` (the embedded local default: a file, no server; `sqlite://relative.db` too),
- `memory://` (in-process, gone when the process ends),
- `redis://host:port/db` (Kubernetes: one Redis list per entity, read with one pipelined round trip).

Every write is atomic: a batch of events for many entities is written whole or not at all. `seed` writes an
entity history once per (namespace, source), so seeding the same training history again adds nothing. A write
given a key (`append_many(..., once=key)`: a push's Idempotency-Key, a CloudEvent's source and id) is written
once per (namespace, key) within ONCE_SECONDS, so a retried push, or an event its broker delivers twice, adds
nothing the second time.
`erase` removes an entity's events and remembers the entity, so that no later `seed` writes it back from a
package trained before the erasure (an empty store seeds from the package's fitted history); events served
after the erasure are new and are kept. A Redis out of reach (refused, or silent past RedisStore's timeouts)
raises OnlineStoreUnavailable, one line naming the store (without its password), which a model server answers
with a 503; so does a Redis that refuses writes (full under `noeviction`, or a read-only replica). So does a
read of a definition's history (`events_many(..., seeded=True)`, as served entity features read) when the store
holds no seed of that definition: a Redis restarted without its data, between two requests, would otherwise
answer every entity as one never seen.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

Event = tuple[float, dict[str, float]]
Events = Mapping[str, list[Event]]  # entity -> its events

# How long a write's key is remembered: retries (a client's, a broker's redelivery) come within hours.
ONCE_SECONDS = 24 * 3600


class OnlineStoreError(ValueError):
    """A store URL that names no backend, or an event that is not (finite time, {column: finite number})."""


class OnlineStoreUnavailable(RuntimeError):
    """The store cannot answer: its server is unreachable (a model server answers 503 meanwhile)."""


class HistoryLost(OnlineStoreUnavailable):
    """The store holds no seeded history of a definition that a served version reads: it lost its data (a Redis
    restarted without persistence), or the definition's owner was never served with it."""

    def __init__(self, url: str, namespace: str, remedy: str = "") -> None:
        self.namespace = namespace
        super().__init__(
            f"online store {shown(url)} holds no history of definition {namespace!r}: it lost its data (a restart "
            f"without persistence?) or " + (remedy or f"the use case {namespace!r} was never served with it; serving "
                                                      f"{namespace!r} seeds it again"))


class IncompatibleEvents(OnlineStoreUnavailable):
    """The stored events of a definition lack an amount column that a version's windows sum: they were written by
    a version whose events did not keep it (before events carried every amount column of the use case)."""

    def __init__(self, url: str, namespace: str, missing: Iterable[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"online store {shown(url)}: the events of definition {namespace!r} carry no "
            f"{', '.join(map(repr, self.missing))}, which this version's windows sum; they were written by a version "
            f"that did not keep that column. Serve this version with an empty online store (it seeds it from its "
            f"own history), or retrain without those windows")


def shown(url: str) -> str:
    """A store URL as messages show it: without a password (redis://:secret@host/0 -> redis://host/0)."""
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def canonical(events: Iterable[Event]) -> list[Event]:
    """Events in the one order both the offline and the online computations use: by time, then amounts.

    Summing in this order gives bit-identical running sums however the events arrived.
    """
    return sorted(events, key=lambda event: (event[0], sorted(event[1].items())))


def _checked(entity: str, events: list[Event]) -> list[Event]:
    if not isinstance(entity, str) or not entity:
        raise OnlineStoreError(f"entity: expected a non-empty string, got {entity!r}")
    checked = []
    for time, amounts in events:
        if isinstance(time, bool) or not isinstance(time, (int, float)) or not math.isfinite(time):
            raise OnlineStoreError(f"entity {entity!r}: time {time!r} is not a finite number of seconds")
        for column, value in amounts.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OnlineStoreError(f"entity {entity!r}: amount {column!r} = {value!r} is not a finite number")
        checked.append((float(time), {str(c): float(v) for c, v in amounts.items()}))
    return checked


def _encode(event: Event) -> str:
    return json.dumps([event[0], event[1]], sort_keys=True)  # floats round-trip exactly through repr


def _decode(text: str | bytes) -> Event:
    time, amounts = json.loads(text)
    return float(time), {c: float(v) for c, v in amounts.items()}


class OnlineStore(ABC):
    """Events per (namespace, entity); see the module docstring."""

    url: str

    def append(self, namespace: str, entity: str, events: list[Event]) -> None:
        """Add `events` to one entity."""
        self.append_many(namespace, {entity: events})

    def append_many(self, namespace: str, events: Events, once: str | None = None) -> bool:
        """Add events to many entities at once, all or nothing (a bad event raises before anything is written).
        With `once`, a key naming this write, write only if no write of `namespace` carried that key in the last
        ONCE_SECONDS: False, writing nothing, when one did (a retry)."""
        checked = {entity: _checked(entity, list(batch)) for entity, batch in events.items()}
        return self._write(namespace, {e: batch for e, batch in checked.items() if batch}, seed=None, once=once)

    def seed(self, namespace: str, source: str, events: Events) -> bool:
        """Write `events` once per (namespace, source), e.g. source = the FeatureSet version whose training
        history they are, leaving out erased entities. Returns False (writing nothing) when that source was
        seeded already."""
        erased = self._erased(namespace)
        checked = {entity: _checked(entity, list(batch)) for entity, batch in events.items() if entity not in erased}
        return self._write(namespace, {e: batch for e, batch in checked.items() if batch}, seed=source)

    def events(self, namespace: str, entity: str) -> list[Event]:
        """One entity's events, in canonical order (`canonical`)."""
        return self.events_many(namespace, [entity])[entity]

    def events_many(self, namespace: str, entities: Iterable[str], seeded: bool = False) -> dict[str, list[Event]]:
        """The events of each of `entities` (none for an unknown one), canonically ordered, in one lookup. With
        `seeded`, raise HistoryLost when no history of `namespace` was ever seeded (checked in the same lookup)."""
        wanted = list(dict.fromkeys(entities))
        if not (wanted or seeded):
            return {}
        stored, has_seed = self._read(namespace, wanted, seeded)
        if not has_seed:
            raise HistoryLost(self.url, namespace)
        return {entity: canonical(stored.get(entity, [])) for entity in wanted}

    def is_seeded(self, namespace: str) -> bool:
        """Whether a history of `namespace` was seeded (and the store has not lost it since)."""
        return self._read(namespace, [], True)[1]

    def erase(self, namespace: str, entity: str) -> int:
        """Remove every event of one entity (an erasure request), and remember it for `seed`; returns how many
        events there were."""
        return self._erase(namespace, entity)

    @abstractmethod
    def _erase(self, namespace: str, entity: str) -> int:
        """Delete the entity's events and mark it erased, atomically; the events' count."""

    @abstractmethod
    def _erased(self, namespace: str) -> set[str]:
        """The entities erased in `namespace`."""

    @abstractmethod
    def _write(self, namespace: str, events: dict[str, list[Event]], seed: str | None,
               once: str | None = None) -> bool:
        """Append atomically; with `seed`, only if (namespace, seed) is not marked yet, and mark it; with `once`,
        only if (namespace, once) was not marked in the last ONCE_SECONDS, and mark it now."""

    @abstractmethod
    def _read(self, namespace: str, entities: list[str], seeded: bool) -> tuple[dict[str, list[Event]], bool]:
        """The stored events of `entities`, in any order, and (when `seeded` asks; else True) whether any source
        of `namespace` is seeded."""

    def ping(self) -> None:
        """Raise OnlineStoreUnavailable when the store cannot be reached (only a server can be out of reach)."""

    def close(self) -> None:
        """Release the connection (the memory store keeps its events until the process ends)."""


class MemoryStore(OnlineStore):
    """In-process: for tests and a single local process."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._events: dict[tuple[str, str], list[Event]] = {}
        self._seeds: set[tuple[str, str]] = set()
        self._erased_entities: set[tuple[str, str]] = set()
        self._keys: OrderedDict[tuple[str, str], float] = OrderedDict()  # (namespace, once) -> when, oldest first
        self._lock = threading.Lock()

    def _write(self, namespace: str, events: dict[str, list[Event]], seed: str | None,
               once: str | None = None) -> bool:
        with self._lock:
            if seed is not None:
                if (namespace, seed) in self._seeds:
                    return False
                self._seeds.add((namespace, seed))
            if once is not None:
                now = time.time()
                while self._keys and next(iter(self._keys.values())) <= now - ONCE_SECONDS:
                    self._keys.popitem(last=False)
                if (namespace, once) in self._keys:
                    return False
                self._keys[namespace, once] = now
            for entity, batch in events.items():
                self._events.setdefault((namespace, entity), []).extend(batch)
            return True

    def _read(self, namespace: str, entities: list[str], seeded: bool) -> tuple[dict[str, list[Event]], bool]:
        with self._lock:
            has_seed = not seeded or any(space == namespace for space, _ in self._seeds)
            return {entity: list(self._events.get((namespace, entity), [])) for entity in entities}, has_seed

    def _erase(self, namespace: str, entity: str) -> int:
        with self._lock:
            self._erased_entities.add((namespace, entity))
            return len(self._events.pop((namespace, entity), []))

    def _erased(self, namespace: str) -> set[str]:
        with self._lock:
            return {entity for space, entity in self._erased_entities if space == namespace}


class SQLiteStore(OnlineStore):
    """An embedded SQLite file: the local default, shared by the processes that open the same file."""

    def __init__(self, url: str, path: Path) -> None:
        self.url = url
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("CREATE TABLE IF NOT EXISTS events (namespace TEXT NOT NULL, "
                                     "entity TEXT NOT NULL, event TEXT NOT NULL)")
            self._connection.execute("CREATE INDEX IF NOT EXISTS events_by_entity ON events (namespace, entity)")
            self._connection.execute("CREATE TABLE IF NOT EXISTS seeds (namespace TEXT NOT NULL, "
                                     "source TEXT NOT NULL, PRIMARY KEY (namespace, source))")
            self._connection.execute("CREATE TABLE IF NOT EXISTS erased (namespace TEXT NOT NULL, "
                                     "entity TEXT NOT NULL, PRIMARY KEY (namespace, entity))")
            self._connection.execute("CREATE TABLE IF NOT EXISTS written_once (namespace TEXT NOT NULL, "
                                     "key TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (namespace, key))")
            self._connection.execute("CREATE INDEX IF NOT EXISTS written_once_by_time ON written_once (at)")

    def _write(self, namespace: str, events: dict[str, list[Event]], seed: str | None,
               once: str | None = None) -> bool:
        rows = [(namespace, entity, _encode(event)) for entity, batch in events.items() for event in batch]
        with self._lock:
            db = self._connection
            db.execute("BEGIN IMMEDIATE")
            try:
                if seed is not None and db.execute("INSERT OR IGNORE INTO seeds VALUES (?, ?)",
                                                   (namespace, seed)).rowcount == 0:
                    db.execute("ROLLBACK")
                    return False
                if once is not None:
                    now = time.time()
                    db.execute("DELETE FROM written_once WHERE at <= ?", (now - ONCE_SECONDS,))
                    if db.execute("INSERT OR IGNORE INTO written_once VALUES (?, ?, ?)",
                                  (namespace, once, now)).rowcount == 0:
                        db.execute("ROLLBACK")
                        return False
                db.executemany("INSERT INTO events VALUES (?, ?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return True

    def _read(self, namespace: str, entities: list[str], seeded: bool) -> tuple[dict[str, list[Event]], bool]:
        found: dict[str, list[Event]] = {}
        with self._lock:
            has_seed = not seeded or self._connection.execute(
                "SELECT 1 FROM seeds WHERE namespace = ? LIMIT 1", (namespace,)).fetchone() is not None
            for start in range(0, len(entities), 500):  # SQLite's limit on bound parameters
                chunk = entities[start:start + 500]
                query = (f"SELECT entity, event FROM events WHERE namespace = ? AND entity IN "
                         f"({', '.join('?' * len(chunk))})")
                for entity, event in self._connection.execute(query, (namespace, *chunk)):
                    found.setdefault(entity, []).append(_decode(event))
        return found, has_seed

    def _erase(self, namespace: str, entity: str) -> int:
        with self._lock:
            db = self._connection
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR IGNORE INTO erased VALUES (?, ?)", (namespace, entity))
                count = db.execute("DELETE FROM events WHERE namespace = ? AND entity = ?",
                                   (namespace, entity)).rowcount
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return count

    def _erased(self, namespace: str) -> set[str]:
        with self._lock:
            return {entity for (entity,) in self._connection.execute(
                "SELECT entity FROM erased WHERE namespace = ?", (namespace,))}

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class RedisStore(OnlineStore):
    """A Redis server: one list per (namespace, entity) under `flowline:events:`, seeds in a set per namespace, a
    write's key as its own string, expiring after ONCE_SECONDS."""

    PREFIX = "flowline:events:"
    SEEDS = "flowline:seeds:"
    ERASED = "flowline:erased:"
    ONCE = "flowline:once:"

    CONNECT_TIMEOUT_S = 5.0  # a host that does not answer at all fails a request within this, not never
    TIMEOUT_S = 5.0

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        # Options in the URL (?socket_timeout=...) take precedence over these.
        self._client = redis.Redis.from_url(url, socket_connect_timeout=self.CONNECT_TIMEOUT_S,
                                            socket_timeout=self.TIMEOUT_S)

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Redis unreachable (refused, timed out, still loading its data) or refusing writes (full, or a read-only
        replica) as OnlineStoreUnavailable, in one line."""
        import redis

        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise OnlineStoreUnavailable(f"online store {shown(self.url)} is unreachable: {error}") from None
        except redis.OutOfMemoryError:
            raise OnlineStoreUnavailable(f"online store {shown(self.url)} refuses writes: it is full (its maxmemory "
                                         f"is reached); give it more memory") from None
        except redis.ReadOnlyError:
            raise OnlineStoreUnavailable(f"online store {shown(self.url)} refuses writes: it is a read-only "
                                         f"replica; point --online-store at the primary") from None

    def ping(self) -> None:
        with self._reachable():
            self._client.ping()

    def _key(self, namespace: str, entity: str) -> str:
        return f"{self.PREFIX}{namespace}:{entity}"  # a namespace is a slug, so no two keys collide

    def _write(self, namespace: str, events: dict[str, list[Event]], seed: str | None,
               once: str | None = None) -> bool:
        import redis

        seeds = self.SEEDS + namespace
        mark = None if once is None else f"{self.ONCE}{namespace}:{once}"
        with self._reachable(), self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    if seed is not None:
                        pipe.watch(seeds)
                        if pipe.sismember(seeds, seed):
                            return False
                        pipe.multi()
                        pipe.sadd(seeds, seed)
                    elif mark is not None:
                        pipe.watch(mark)
                        if pipe.exists(mark):
                            return False
                        pipe.multi()
                        pipe.set(mark, 1, ex=ONCE_SECONDS)
                    for entity, batch in events.items():
                        pipe.rpush(self._key(namespace, entity), *(_encode(event) for event in batch))
                    pipe.execute()
                    return True
                except redis.WatchError:  # another process seeded meanwhile: look again
                    pipe.reset()

    def _read(self, namespace: str, entities: list[str], seeded: bool) -> tuple[dict[str, list[Event]], bool]:
        with self._reachable(), self._client.pipeline(transaction=False) as pipe:
            for entity in entities:
                pipe.lrange(self._key(namespace, entity), 0, -1)
            if seeded:
                pipe.exists(self.SEEDS + namespace)  # in the same round trip
            answers = pipe.execute()
        has_seed = bool(answers.pop()) if seeded else True
        return {entity: [_decode(item) for item in items] for entity, items in zip(entities, answers)}, has_seed

    def _erase(self, namespace: str, entity: str) -> int:
        key = self._key(namespace, entity)
        with self._reachable(), self._client.pipeline(transaction=True) as pipe:
            count, _, _ = pipe.llen(key).delete(key).sadd(self.ERASED + namespace, entity).execute()
        return int(count)

    def _erased(self, namespace: str) -> set[str]:
        with self._reachable():
            return {entity.decode() for entity in self._client.smembers(self.ERASED + namespace)}

    def close(self) -> None:
        self._client.close()


def open_store(url: str) -> OnlineStore:
    """The store a URL names: sqlite:///path.db, memory:// or redis://host:port/db."""
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise OnlineStoreError(f"online store {url!r}: give a file, e.g. sqlite:///tmp/online.db")
        return SQLiteStore(url, Path(path))
    if url == "memory://":
        return MemoryStore(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise OnlineStoreError(f"online store {url!r}: expected sqlite:///path.db, memory:// or redis://host:port/db")
