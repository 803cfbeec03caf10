"""A readable view of a kfp.local run: progress on the terminal, the task logs in run.log; and the
bar of a batch scoring run (`rows_bar`).

kfp.local streams each task's executor log to stdout, including its whole input JSON and
terminal colour codes. run.log keeps every task's log without those two; the terminal
shows, on a terminal, a live bar for the run (steps done, elapsed time, ETA) and one for
the trials of the tuning step running now, built from the tune and nas steps' own
"tune (xgboost): trial 12/30 ..." lines; elsewhere (CI, a file, a pipe), the same progress
as plain lines, one per step start and end plus the components' own lines, with no escape
codes. When a step fails, its root cause (the exception line) is kept, in one line, for
the terminal and the audit log.
"""

from __future__ import annotations

import io
import re
import time
from collections import deque
from typing import Iterable, Mapping, Optional, TextIO

from tqdm import tqdm

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([\w-]+)'")
FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
ARTIFACT_LISTING = re.compile(r"^[\w-]+: \w+\( name=")  # kfp.local's own listing of a task's outputs
EXECUTOR_INPUT = "Got executor_input:"  # kfp's executor prints the task's whole input JSON after this line
# A trial's line: "trial 3/30" in a trials budget; "trial 3", with no total, in a time budget.
TRIAL = re.compile(r"^((?:tune|nas) \([\w-]+\)): trial \d+(?:/(\d+))?(?:.*\(best ([-\d.]+)\))?")
SEARCH_LINES = ("tune", "nas")  # what the families' searches print as: in the tune and nas steps, or all in search
FAILURE_TAIL = 30
RUN_BAR = "{desc} {n_fmt}/{total_fmt} steps |{bar}| {elapsed} elapsed, ETA {remaining}"
TRIAL_BAR = "{desc} {n_fmt}/{total_fmt} trials |{bar}| {elapsed} elapsed, ETA {remaining}{postfix}"
BUDGET_TRIAL_BAR = "{desc} {n_fmt} trials, {elapsed} elapsed{postfix}"  # a time budget: no total to count to
ROWS_BAR = "{desc} {n_fmt}/{total_fmt} rows |{bar}| {elapsed} elapsed, ETA {remaining}, {rate_fmt}"
# A traceback's last line: an exception class (module path optional), then its message.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt))(?:: (.*))?$")


class ProgressStream(io.TextIOBase):
    """A stdout replacement: writes the task logs to `log`, and progress to `terminal`.

    On a terminal, and unless `verbose`, progress is live bars (tqdm); elsewhere plain lines.
    Call finish() at the end of the run: it writes a last unfinished line and closes the bars.
    """

    def __init__(self, log: TextIO, terminal: TextIO, steps: tuple[str, ...], verbose: bool = False,
                 display: Optional[Mapping[str, str]] = None) -> None:
        """`steps`: the tasks as kfp.local's lines name them; `display`: the name shown for each (tune-2 is
        tune-linear), in the progress lines, `step_seconds` and `failure`."""
        self.log, self.terminal, self.steps, self.verbose = log, terminal, steps, verbose
        self.display = dict(display or {})
        self.bars = terminal.isatty() and not verbose
        self._pending = ""
        self._input_end: str | None = None  # while inside an input JSON: the line that closes it
        self._task_lines: deque[str] = deque(maxlen=FAILURE_TAIL)
        self._task_started = 0.0
        self._started = 0
        self._run_bar: tqdm | None = None
        self._trial_bar: tqdm | None = None
        self.step_seconds: dict[str, float] = {}  # each finished step's wall time, in the order they ran
        self.failure: str | None = None  # "step 'name': ExceptionName: message"
        self.step: str | None = None  # the step started last (its display name)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def finish(self) -> None:
        """Write what is left of an unfinished line and close the bars (the run's stays on screen)."""
        if self._pending:
            self._line(ANSI.sub("", self._pending))
            self._pending = ""
        for bar in (self._trial_bar, self._run_bar):
            if bar is not None:
                bar.close()
        self._trial_bar = self._run_bar = None
        self.flush()

    def _line(self, line: str) -> None:
        """One line of kfp.local's output: to run.log unless it is part of an input JSON, then to the terminal."""
        if self._input_end == "":  # the line after the header: the JSON's opening brace sets its closing line
            if line.strip() == "{":
                self._input_end = line[:len(line) - len(line.lstrip())] + "}"
                return
            self._input_end = None
        elif self._input_end is not None:
            if line.rstrip() == self._input_end:
                self._input_end = None
            return
        if line.endswith(EXECUTOR_INPUT):
            self._input_end = ""
            return
        self.log.write(line + "\n")
        self._show(line)

    def _say(self, text: str) -> None:
        """A line on the terminal, above the bars when there are bars."""
        if self.bars:
            tqdm.write(text, file=self.terminal)
        else:
            self.terminal.write(text + "\n")

    def _show(self, line: str) -> None:
        started, finished = STARTED.search(line), FINISHED.search(line)
        step = started or finished
        name = self.display.get(step.group(1), step.group(1)) if step else ""
        if finished:
            self.step_seconds[name] = round(time.monotonic() - self._task_started, 2)
        if started:
            self.step = name
            self._task_lines.clear()
            self._task_started = time.monotonic()
        elif finished and finished.group(2) != "SUCCESS":
            self.failure = f"step {name!r}: {root_cause(self._task_lines) or finished.group(2).lower()}"
        elif not finished:
            self._task_lines.append(line.strip())
        if self.verbose:
            self._say(line)
        elif started:
            self._started += 1  # numbered as they start: kfp.local runs independent steps in its own order
            self._step_started(name)
        elif finished:
            self._step_finished(name, finished.group(2))
        else:
            stripped = line.strip()
            is_step_line = any(stripped.startswith((f"{step}:", f"{step} (")) for step in (*self.steps, *SEARCH_LINES))
            if is_step_line and not ARTIFACT_LISTING.match(stripped):
                self._step_line(stripped)

    def _step_started(self, name: str) -> None:
        self._say(f"[{self._started}/{len(self.steps)}] {name}")
        if not self.bars:
            return
        if self._run_bar is None:
            self._run_bar = tqdm(total=len(self.steps), file=self.terminal, position=0, bar_format=RUN_BAR,
                                 dynamic_ncols=True)
        self._run_bar.set_description_str(f"run: {name}")

    def _step_finished(self, name: str, status: str) -> None:
        shown = f"      {name} {status.lower()} in {self.step_seconds[name]:.1f} s"
        if status == "SUCCESS":
            self._say(shown)
        elif cause := root_cause(self._task_lines):
            self._say(f"{shown}: {cause}")
        else:  # no exception line to name: the end of the step's log is all there is
            self._say(f"{shown}; last lines of {name}'s log:")
            for kept in self._task_lines:
                self._say(f"        {kept}")
        if self._trial_bar is not None:
            self._trial_bar.close()
            self._trial_bar = None
        if self._run_bar is not None:
            self._run_bar.update(1)

    def _step_line(self, line: str) -> None:
        """A component's own line; on a terminal, a trial line moves the trial bar instead."""
        trial = TRIAL.match(line)
        if not (self.bars and trial):
            self._say(f"      {line}")
            return
        search, trials, best = trial.groups()
        if self._trial_bar is None or self._trial_bar.desc != search:
            if self._trial_bar is not None:
                self._trial_bar.close()
            self._trial_bar = tqdm(total=int(trials) if trials else None, desc=search, file=self.terminal,
                                   position=1, leave=False, bar_format=TRIAL_BAR if trials else BUDGET_TRIAL_BAR,
                                   dynamic_ncols=True)
        if best:
            self._trial_bar.set_postfix_str(f"best {best}", refresh=False)
        self._trial_bar.update(1)  # counted as they end: parallel trials end out of order


def root_cause(lines: Iterable[str]) -> str | None:
    """The last exception line of a task's log ("ContractError: ..."), without its module path."""
    for line in reversed(list(lines)):
        if match := EXCEPTION_LINE.match(line):
            name, message = match.groups()
            return f"{name}: {message}" if message else name
    return None


def rows_bar(terminal: TextIO, total: int | None, desc: str = "score") -> tqdm:
    """A live bar of the rows read so far (`total` when known, as for Parquet), on a terminal only: elsewhere
    the run's summary line says it all."""
    return tqdm(total=total, desc=desc, unit=" rows", unit_scale=True, file=terminal, dynamic_ncols=True,
                bar_format=ROWS_BAR if total else None, disable=not terminal.isatty())
