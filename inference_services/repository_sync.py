"""Load and unload across the worker processes of `flowline serve --workers N`.

A `POST /v2/repository/models/{name}/load` or `.../unload` reaches one worker. That worker, holding the
repository lock (a file lock, so one such call at a time across workers), applies it first: a package
refused by verification is a 409 there and nothing else happens. Then it writes the model's order, a
small JSON file with a generation number, and waits until every worker has applied that generation:
each worker polls the orders every POLL_S (one os.stat per model), applies a new one (reload the
model's package path, or take the model out of service) and writes what it applied to its own state
file. Only then does the call answer 200, so that every answer after it comes from the new version.

The files live in a folder the parent process creates for this server start and removes at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import AsyncIterator, Mapping, Sequence

from kserve import Model

log = logging.getLogger("flowline.serving")

POLL_S = 0.1
# A worker switches once it has verified and loaded the package: seconds; a worker still starting, longer.
SWITCH_TIMEOUT_S = 120.0


def _write_atomically(path: Path, content: dict) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(json.dumps(content))
    os.replace(staging, path)  # a reader sees the old file or the new one, never half of one


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


class WorkerSync:
    """One worker's side of the orders: `publish` what it applied, `follow` what others did."""

    def __init__(self, directory: Path, worker: int, workers: int, models: Sequence[str]) -> None:
        self.directory = directory
        self.worker = worker
        self.workers = workers
        self.models = list(models)  # the same order in every worker: a model's files are named by position
        self.applied = {name: 0 for name in self.models}  # generation of each model's order applied here
        self.errors: dict[str, str] = {}  # why this worker failed to apply a model's last order
        self._seen: dict[str, tuple[int, int]] = {}

    def _order(self, model: str) -> Path:
        return self.directory / f"model-{self.models.index(model)}.json"

    def _state(self, worker: int) -> Path:
        return self.directory / f"worker-{worker}.json"

    def report(self) -> None:
        """Write what this worker has applied; its first report says it has loaded its models and serves."""
        _write_atomically(self._state(self.worker), {"pid": os.getpid(), "applied": self.applied,
                                                     "errors": self.errors})

    def pids(self) -> dict[int, int]:
        """Each started worker's pid, by its index (from the reports)."""
        return {worker: state["pid"] for worker in range(self.workers) if (state := _read(self._state(worker)))}

    def all_started(self) -> bool:
        """Whether every worker has loaded its models (readiness waits for the whole server)."""
        return all(self._state(worker).is_file() for worker in range(self.workers))

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the repository lock across workers (waiting for it in a thread: this worker keeps serving)."""
        with open(self.directory / "lock", "a") as lock:
            await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def publish(self, model: str, action: str, version: str) -> list[str]:
        """Under `exclusive()`, after applying `action` ("load" of `version`, or "unload") here: order every
        worker to apply it and wait until they have. Returns the problems, one per worker that failed or
        did not answer within SWITCH_TIMEOUT_S; empty when every worker switched."""
        generation = _read(self._order(model)).get("generation", 0) + 1
        self.applied[model] = generation
        self.errors.pop(model, None)
        self.report()
        _write_atomically(self._order(model), {"generation": generation, "action": action, "version": version})
        deadline = time.monotonic() + SWITCH_TIMEOUT_S
        while True:
            states = {worker: _read(self._state(worker)) for worker in range(self.workers)}
            behind = [worker for worker, state in states.items()
                      if state.get("applied", {}).get(model, 0) < generation]
            if not behind:
                return [f"worker {worker} (pid {state['pid']}): {state['errors'][model]}"
                        for worker, state in states.items() if model in state.get("errors", {})]
            if time.monotonic() > deadline:
                return [f"worker {worker} did not apply the {action} within {SWITCH_TIMEOUT_S:.0f} s"
                        for worker in behind]
            await asyncio.sleep(POLL_S)

    async def follow(self, models: Mapping[str, Model]) -> None:
        """Apply every new order another worker publishes, until cancelled."""
        while True:
            for name in self.models:
                try:
                    await self._follow(name, models[name])
                except Exception:  # noqa: BLE001 - keep following; the publisher times out on this worker
                    log.exception("could not follow the order for %s", name)
            await asyncio.sleep(POLL_S)

    async def _follow(self, name: str, model: Model) -> None:
        order_path = self._order(name)
        try:
            stat = order_path.stat()
        except FileNotFoundError:
            return
        if self._seen.get(name) == (stat.st_ino, stat.st_mtime_ns):
            return
        self._seen[name] = (stat.st_ino, stat.st_mtime_ns)
        order = _read(order_path)
        if order.get("generation", 0) <= self.applied[name]:
            return
        self.errors.pop(name, None)
        if order["action"] == "unload":
            model.ready = False
        else:
            try:
                version = await asyncio.to_thread(model.reload)
                if version != order["version"]:
                    self.errors[name] = (f"loaded version {version}, not {order['version']}: the package at "
                                         f"{model.package_path} changed meanwhile; load again")
            except Exception as error:  # noqa: BLE001 - reported to the worker that answers the call
                self.errors[name] = f"package refused: {error}"
        self.applied[name] = order["generation"]
        self.report()
        log.info("%s: applied the %s of generation %d%s", name, order["action"], order["generation"],
                 f" ({self.errors[name]})" if name in self.errors else "")
