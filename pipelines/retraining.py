"""Drift-triggered retraining: what the drift monitor does when a window drifts.

The action is configured on the monitor (`--on-drift`):
- `local`: start `flowline run USE_CASE` in the background, writing to a runs folder whose
  audit log then holds the run, its package and its gate decision;
- `kfp`: submit a run of the use case's pipeline with kfp.Client (`flowline submit`);
- `off` (the default): only the metrics and alerts.

Each trigger is recorded in the audit log as a `retraining_triggered` record with the drift
test that caused it, started or not (a start that failed says why). Only one retraining is under
way at a time (a local run's process, a KFP run's state), and after one is triggered the next waits out a
cool-down, so a drifting stream does not start a run per window. The cool-down is read back from
the audit log when the monitor starts, so a restart or a promoted package does not reset it.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from flowline import DEFAULT_IMAGE, audit
from flowline.storage import is_s3

MODES = ("off", "local", "kfp")
DEFAULT_COOLDOWN_S = 6 * 3600


@dataclass
class RetrainingAction:
    """What to do on drift. `use_case` is a built-in name or a use-case YAML path; "" retrains the
    monitored model's use case, by its name."""

    mode: str
    use_case: str
    audit_log: str
    runs_dir: str = "runs"
    trials: int = 0
    kfp_host: str = ""
    experiment: str = ""
    cooldown_seconds: float = DEFAULT_COOLDOWN_S
    source: str = ""  # kfp: where the run reads its data (s3:// or http(s)), else the use case's own
    image: str = DEFAULT_IMAGE  # kfp: the steps' image
    _triggered_at: dict[str, float] = field(default_factory=dict, repr=False)  # use case -> epoch seconds
    _kfp_runs: dict[str, str] = field(default_factory=dict, repr=False)  # use case -> its last retraining run id
    _process: Optional[subprocess.Popen] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"on-drift action {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.mode == "kfp" and not self.kfp_host:
            raise ValueError("on-drift action kfp needs the KFP host (--kfp-host)")
        if self.trials < 0:
            raise ValueError(f"--retrain-trials {self.trials}: give 0 (the use case's budget) or more")
        if not (math.isfinite(self.cooldown_seconds) and self.cooldown_seconds >= 0):
            raise ValueError(f"--retrain-cooldown {self.cooldown_seconds}: give seconds, 0 or more")
        if self.mode != "off":
            self._triggered_at, self._kfp_runs = _last_triggers(self.audit_log)

    def busy(self, monitored: str) -> Optional[str]:
        """Why no retraining of `monitored` may start now, or None."""
        if self._process is not None and self._process.poll() is None:
            return f"the retraining started at pid {self._process.pid} is still running"
        last = self._triggered_at.get(monitored)
        if last is not None and time.time() - last < self.cooldown_seconds:
            return f"the last retraining was triggered less than {self.cooldown_seconds:g} s ago"
        run_id = self._kfp_runs.get(monitored)
        if self.mode == "kfp" and run_id and not self._kfp_run_finished(run_id):
            return f"the retraining run {run_id} is still running on KFP"
        return None

    def _kfp_run_finished(self, run_id: str) -> bool:
        """Whether KFP says the run ended; a KFP that cannot say (unreachable, refusing) is taken as yes: the start
        that follows then fails and is recorded with why."""
        from flowline.pipelines.submission import run_finished

        try:
            return run_finished(self.kfp_host, run_id, os.environ.get("KFP_TOKEN"))
        except Exception:
            return True

    def on_drift(self, monitored: str, model_version: str, p_values: dict[str, float]) -> dict:
        """Start a retraining for a drifted window unless one is under way; record it. Returns what happened."""
        if self.mode == "off":
            return {"action": "off"}
        reason = self.busy(monitored)
        if reason:
            return {"action": self.mode, "started": False, "reason": reason}
        drifted = sorted(p_values, key=p_values.get)[:3]
        use_case = self.use_case or monitored
        self._triggered_at[monitored] = time.time()  # a start that fails waits out the cool-down too
        try:
            outcome = {"started": True,
                       **(self._start_local(use_case) if self.mode == "local" else self._start_kfp(use_case))}
        except Exception as error:  # the drift test stands; the answer and the record say why no run started
            outcome = {"started": False, "error": f"{type(error).__name__}: {error}"[:500]}
        if outcome.get("run_id"):
            self._kfp_runs[monitored] = outcome["run_id"]
        audit.append(self.audit_log, "retraining_triggered", {
            "use_case": monitored, "model_version": model_version, "action": self.mode, **outcome,
            "lowest_p_values": {name: p_values[name] for name in drifted}})
        return {"action": self.mode, **outcome}

    def _start_local(self, use_case: str) -> dict:
        log = Path(self.runs_dir) / "retraining.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "flowline.pipelines.cli", "run", use_case, "--runs-dir", self.runs_dir]
        if self.trials:
            command += ["--trials", str(self.trials)]
        with open(log, "a") as output:
            self._process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        return {"pid": self._process.pid, "command": command, "log": str(log)}

    def _start_kfp(self, use_case: str) -> dict:
        from flowline.pipelines.submission import submit
        from flowline.use_case_loader import load_use_case

        parameters = {"trials": self.trials} if self.trials else {}
        if is_s3(self.audit_log):
            parameters["audit_log"] = self.audit_log
        submitted = submit(load_use_case(use_case), self.kfp_host, self.experiment or None, parameters=parameters,
                           source=self.source, image=self.image, token=os.environ.get("KFP_TOKEN"))
        return {"run_id": submitted["run_id"], "experiment_id": submitted["experiment_id"]}


def _last_triggers(audit_log: str) -> tuple[dict[str, float], dict[str, str]]:
    """When each use case's retraining was last triggered, and its last KFP run, by the audit log's
    `retraining_triggered` records (none when the log does not exist yet); a log this monitor could not append to
    is refused now, not at the first drifted window."""
    try:
        records = audit.read(audit_log)
    except audit.NoAuditLog:
        return {}, {}
    except audit.AuditError as error:
        raise ValueError(f"the audit log the retraining records go to: {error}") from None
    triggers = [record for record in records if record["action"] == "retraining_triggered"]
    return ({record["what"]["use_case"]: datetime.fromisoformat(record["at"]).timestamp() for record in triggers},
            {record["what"]["use_case"]: record["what"]["run_id"] for record in triggers if record["what"].get("run_id")})

