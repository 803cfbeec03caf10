"""A readable view of a kfp.local run: step progress on the terminal, everything in run.log.

kfp.local streams each task's full executor log (including its whole input JSON) to
stdout. The run keeps all of it in the run folder and shows the terminal one line per
step start and end plus the components' own progress lines. When a step fails, the
last lines of its log (the traceback) are shown too, and its root cause (the exception
line) is kept, in one line, for the audit log.
"""

from __future__ import annotations

import io
import re
import time
from collections import deque
from typing import Iterable, TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([\w-]+)'")
FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")
ARTIFACT_LISTING = re.compile(r"^[\w-]+: \w+\( name=")  # kfp.local's own listing of a task's outputs
FAILURE_TAIL = 30
# A traceback's last line: an exception class (module path optional), then its message.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt))(?:: (.*))?$")


class ProgressStream(io.TextIOBase):
    """A stdout replacement: writes every line to `log`, and progress lines to `terminal`."""

    def __init__(self, log: TextIO, terminal: TextIO, steps: tuple[str, ...], verbose: bool = False) -> None:
        self.log, self.terminal, self.steps, self.verbose = log, terminal, steps, verbose
        self._pending = ""
        self._task_lines: deque[str] = deque(maxlen=FAILURE_TAIL)
        self._task_started = 0.0
        self._started = 0
        self.step_seconds: dict[str, float] = {}  # each finished step's wall time, in the order they ran
        self.failure: str | None = None  # "step 'name': ExceptionName: message"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._show(ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def _show(self, line: str) -> None:
        started, finished = STARTED.search(line), FINISHED.search(line)
        if finished:
            self.step_seconds[finished.group(1)] = round(time.monotonic() - self._task_started, 2)
        if started:
            self._task_lines.clear()
            self._task_started = time.monotonic()
        elif finished and finished.group(2) != "SUCCESS":
            self.failure = f"step {finished.group(1)!r}: {root_cause(self._task_lines) or finished.group(2).lower()}"
        elif not finished:
            self._task_lines.append(line.strip())
        if self.verbose:
            self.terminal.write(line + "\n")
        elif started:
            self._started += 1  # numbered as they start: kfp.local runs independent steps in its own order
            self.terminal.write(f"[{self._started}/{len(self.steps)}] {started.group(1)}\n")
        elif finished:
            name, status = finished.groups()
            self.terminal.write(f"      {name} {status.lower()} in {self.step_seconds[name]:.1f} s\n")
            if status != "SUCCESS":
                self.terminal.write(f"      last lines of {name}'s log:\n")
                self.terminal.writelines(f"        {kept}\n" for kept in self._task_lines)
        else:
            stripped = line.strip()
            is_step_line = any(stripped.startswith((f"{step}:", f"{step} (")) for step in self.steps)
            if is_step_line and not ARTIFACT_LISTING.match(stripped):
                self.terminal.write(f"      {stripped}\n")


def root_cause(lines: Iterable[str]) -> str | None:
    """The last exception line of a task's log ("ContractError: ..."), without its module path."""
    for line in reversed(list(lines)):
        if match := EXCEPTION_LINE.match(line):
            name, message = match.groups()
            return f"{name}: {message}" if message else name
    return None
