"""What `flowline run` shows and keeps, from kfp.local's real output: a churn run's ingest, nas and tune
tasks as kfp.local printed them (tests/kfp_local_churn_output.log, colour codes and input JSON included)."""

import fcntl
import io
import json
import os
import re
import struct
import termios
import threading
from pathlib import Path

from pipeline_steps import SHOWN, STEPS

from flowline.pipelines.progress import ANSI, EXECUTOR_INPUT, ProgressStream

CAPTURE = Path(__file__).with_name("kfp_local_churn_output.log").read_text()


def fed(terminal, display=None) -> tuple[str, ProgressStream]:
    """The capture written to a ProgressStream in pieces that split lines, as a pipe delivers them; its log."""
    log = io.StringIO()
    progress = ProgressStream(log, terminal, tuple(STEPS), display=display)
    for start in range(0, len(CAPTURE), 997):
        progress.write(CAPTURE[start:start + 997])
    progress.finish()
    return log.getvalue(), progress


def without_input_json(text: str) -> list[str]:
    """The capture's lines less each header line and the JSON document after it, found by a JSON parser."""
    text = ANSI.sub("", text)
    kept, position = [], 0
    for header in re.finditer(rf"^.*{re.escape(EXECUTOR_INPUT)}\n", text, re.M):
        kept.append(text[position:header.start()])
        document_start = header.end() + len(text[header.end():]) - len(text[header.end():].lstrip())
        _, length = json.JSONDecoder().raw_decode(text, document_start)
        position = text.index("\n", length) + 1
    kept.append(text[position:])
    return "".join(kept).splitlines()


def test_run_log_keeps_every_task_line_but_the_input_json_and_colour_codes(tmp_path: Path):
    with open(tmp_path / "shown.txt", "w") as terminal:
        log, progress = fed(terminal)
    assert "\x1b" in CAPTURE and CAPTURE.count(EXECUTOR_INPUT) == 3
    assert "\x1b" not in log and EXECUTOR_INPUT not in log and "use_case_json" not in log
    assert log.splitlines() == without_input_json(CAPTURE)
    assert len(log.splitlines()) < len(CAPTURE.splitlines()) / 2
    assert "    ingest: /work/shared/data/telco_customer_churn.csv (sha256 16320c9c1ec7): 7043 rows in" in log
    assert "    nas (mlp): trial 16/16 stopped early (below the median)" in log
    assert list(progress.step_seconds) == ["ingest", "nas", "tune"] and progress.failure is None


def test_plain_progress_lines_without_escape_codes_when_output_is_not_a_terminal(tmp_path: Path):
    with open(tmp_path / "shown.txt", "w") as terminal:
        _, progress = fed(terminal)
    shown = (tmp_path / "shown.txt").read_text()
    assert not progress.bars
    assert "\x1b" not in shown and "\r" not in shown
    assert re.findall(rf"^\[(\d+)/{len(STEPS)}\] ([\w-]+)$", shown, re.M) == [("1", "ingest"), ("2", "nas"), ("3", "tune")]
    assert "      nas (mlp): trial 16/16 stopped early (below the median)\n" in shown
    assert "      tune (xgboost): trial 30/30" in shown and "      tune success in" in shown


def test_steps_are_shown_timed_and_named_in_failures_by_their_display_names(tmp_path: Path):
    """kfp.local names the second tune task tune-2: a user reads tune-linear, in the lines and the summary."""
    with open(tmp_path / "shown.txt", "w") as terminal:
        _, progress = fed(terminal, display=dict(zip(STEPS, SHOWN)))
    shown = (tmp_path / "shown.txt").read_text()
    assert re.findall(r"^\[\d+/\d+\] ([\w-]+)$", shown, re.M) == ["ingest", "nas", "tune-xgboost"]
    assert "      tune-xgboost success in" in shown and "      tune (xgboost): trial 30/30" in shown
    assert list(progress.step_seconds) == ["ingest", "nas", "tune-xgboost"]


def on_a_terminal(draw) -> str:
    """What `draw(terminal)` shows on a real pseudo-terminal, 120 columns wide; a thread reads what it draws."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    drawn: list[bytes] = []

    def read() -> None:
        try:
            while chunk := os.read(leader, 65536):
                drawn.append(chunk)
        except OSError:  # EIO: the terminal side is closed and all it wrote was read
            pass

    reader = threading.Thread(target=read)
    reader.start()
    with open(follower, "w", buffering=1) as terminal:
        draw(terminal)
    reader.join()
    os.close(leader)
    return b"".join(drawn).decode()


def test_live_bars_for_the_run_and_its_trials_on_a_terminal():
    streams = []
    shown = on_a_terminal(lambda terminal: streams.append(fed(terminal)[1]))
    (progress,) = streams
    assert progress.bars
    assert "\r" in shown
    assert re.search(rf"run: ingest 0/{len(STEPS)} steps \|.*\| \d\d:\d\d elapsed, ETA", shown)
    assert re.search(rf"run: tune 3/{len(STEPS)} steps \|.*\| \d\d:\d\d elapsed, ETA \d\d:\d\d", shown)  # the last state stays
    assert re.search(r"nas \(mlp\) 0/16 trials \|.*\| \d\d:\d\d elapsed, ETA", shown)
    assert re.search(r"tune \(xgboost\) 0/30 trials \|", shown)
    # Trials move the bars instead of printing a line each; steps and results still print lines above the bars.
    assert "nas (mlp): trial 1/16" not in shown and f"[1/{len(STEPS)}] ingest" in shown
    assert "nas (mlp): best valid_roc_auc 0.8560 after 16 trials" in shown


def test_the_batch_scoring_bar_counts_rows_on_a_terminal_and_stays_quiet_elsewhere():
    from flowline.pipelines.progress import rows_bar

    def draw(terminal) -> None:
        with rows_bar(terminal, 200_000) as bar:
            bar.update(50_000)
            bar.update(50_000)

    assert re.search(r"score 100k/200k rows \|.*\| \d\d:\d\d elapsed, ETA", on_a_terminal(draw))
    piped = io.StringIO()
    with rows_bar(piped, None) as bar:
        bar.update(50_000)
    assert piped.getvalue() == ""  # not a terminal: the run's summary line says it all


BUDGET_SEARCH = "".join(f"{line}\n" for line in [
    "10:00:00.000 - INFO - Executing task \x1b[96m'search'\x1b[0m",
    "    tune: round 1/3: xgboost, linear, forest, mlp, 4.9 s each",
    "    tune (xgboost): trial 1 score 0.8481 (0.4 s)",
    "    tune (xgboost): trial 2 score 0.8559 (0.3 s)",
    "    tune (linear): trial 1 score 0.8412 (1.1 s)",
    "    tune (mlp): no trial within the time budget (0.01 s); left out of the model",
    "10:00:09.000 - INFO - Task \x1b[96m'search'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m",
])


def test_a_time_budgeted_search_shows_its_rounds_trials_and_left_out_families():
    """The search step prints its families' lines as tune's: the progress showed none of them, not even a family
    left out of the model, because no step is called tune in that pipeline."""
    steps = ("ingest", "split", "features", "search", "train")
    plain = io.StringIO()
    progress = ProgressStream(io.StringIO(), plain, steps)
    progress.write(BUDGET_SEARCH)
    progress.finish()
    assert plain.getvalue().splitlines()[1:] == [
        "      tune: round 1/3: xgboost, linear, forest, mlp, 4.9 s each",
        "      tune (xgboost): trial 1 score 0.8481 (0.4 s)", "      tune (xgboost): trial 2 score 0.8559 (0.3 s)",
        "      tune (linear): trial 1 score 0.8412 (1.1 s)",
        "      tune (mlp): no trial within the time budget (0.01 s); left out of the model",
        "      search success in 0.0 s"]

    def draw(terminal) -> None:
        progress = ProgressStream(io.StringIO(), terminal, steps)
        progress.write(BUDGET_SEARCH)
        progress.finish()

    shown = on_a_terminal(draw)
    assert re.search(r"tune \(linear\) \d trials, \d\d:\d\d elapsed", shown)  # a bar with no total to count to
    assert "tune (xgboost): trial 1 score" not in shown and "left out of the model" in shown
