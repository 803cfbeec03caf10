"""A wall-clock search budget spent across the families (`tuning.time_budget`), cost-aware.

The rule is successive halving across families, in seconds rather than trials:

- The search runs in rounds; with n families there are as many rounds as halvings take to
  leave one (4 families: 4, 2, 1, so 3 rounds). Each round gets an equal part of the seconds
  left, shared equally among the families still running.
- In its share a family runs trials one after the other, so a family whose trials are cheap
  runs more of them than a slow one (the cost of a trial is measured as it goes). Within a
  family Optuna's median pruner stops weak trials early, as in the trials budget.
- After a round the weaker half of the running families (by best validation score, the same
  metric on the same rows for every family) stops, as does any family but the best whose mean
  trial took longer than its share of the next round (it could not run one trial in it).
- A family stops as well when it reaches its trials in `tuning.families` (a cap).
- The budget is a ceiling on trial starts: no trial starts once it is spent (one running
  trial may finish past it). A family that got no trial at all has no result.

The budget covers feature selection too: the features step tries no candidate once FEATURES_SHARE
of it is spent (flowline/features/engineering.py), and the search spends what the features step left
(at least 1 - FEATURES_SHARE of it). Both fit on the search sample (flowline/splitting.py), so one
candidate or trial in flight past the budget costs what it costs on `tuning.search_rows` rows, whatever
the data's size, and so do the train step's out-of-fold fits; the final refit on all rows comes on top.

Each family's study is seeded and warm-started (its portfolio's points are its first trials)
as in the trials budget, but how many trials a family gets depends on measured seconds, so a
time-budgeted search is not reproducible: a trials budget (`flowline run --trials`) is.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import optuna

from flowline.models.families import TrainingData
from flowline.search import SearchResult, family_objective, finished_trials, search_result, seeded_study
from flowline.search_space import search_space
from flowline.use_case import TuningSpec

FEATURES_SHARE = 0.25  # of a time budget, the most the features step's search may spend


@dataclass
class FamilySpend:
    """What one family spent: its trials (in all and per round), their seconds and start times (seconds since the
    search began), its best validation score, and why it stopped ("" while it runs)."""

    family: str
    cap: int
    trials: int = 0
    seconds: float = 0.0
    best: float = -math.inf
    stopped: str = ""
    starts: list[float] = field(default_factory=list)
    per_round: list[int] = field(default_factory=list)

    @property
    def trial_seconds(self) -> float:
        return self.seconds / self.trials if self.trials else 0.0


def rounds_for(families: int) -> int:
    """Rounds of halving (keeping the better half, rounded up) until one family is left, counting the last."""
    rounds = 1
    while families > 1:
        families, rounds = math.ceil(families / 2), rounds + 1
    return rounds


def halve(spends: list[FamilySpend], next_share: float, round_number: int) -> None:
    """After round `round_number`: stop the weaker half of the running families (ties: the later in order), and any
    other than the best whose mean trial took longer than `next_share`, each with its reason. A family the round's
    seconds ran out before has no score to rank: it is left to its turn, or to the budget's end."""
    running = [s for s in spends if not s.stopped and s.trials]
    ranked = sorted(running, key=lambda s: -s.best)  # stable: ties keep the families' order
    keep = math.ceil(len(ranked) / 2)
    for place, spend in enumerate(ranked, 1):
        if place > keep:
            spend.stopped = (f"halving after round {round_number}: best {spend.best:.4f} ranked {place} of "
                             f"{len(ranked)}")
        elif place > 1 and spend.trial_seconds > next_share:
            spend.stopped = (f"too slow: a trial takes {spend.trial_seconds:.1f} s, its share of round "
                             f"{round_number + 1} is {next_share:.1f} s")


def budgeted_search(
    families: dict[str, int],
    data: TrainingData,
    tuning: TuningSpec,
    time_budget: float,
    progress: Callable[[str], None] = print,
) -> tuple[dict[str, SearchResult], dict]:
    """Spend `time_budget` seconds over `families` (family -> trial cap) by the module's rule.

    Returns each family's best (families that ran no trial are left out) and the spending record:
    per family its trials, seconds, mean trial seconds, best score, trial start times and why it stopped.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.monotonic()
    spends = [FamilySpend(family, cap) for family, cap in families.items()]
    spaces = {s.family: search_space(s.family, data.task, tuning) for s in spends}
    studies = {family: seeded_study(tuning, space) for family, space in spaces.items()}
    objectives = {family: family_objective(family, space, data, tuning) for family, space in spaces.items()}
    rounds = rounds_for(len(spends))
    for round_number in range(1, rounds + 1):
        running = [s for s in spends if not s.stopped]
        left = time_budget - (time.monotonic() - started)
        if not running or left <= 0:
            break
        share = left / (rounds - round_number + 1) / len(running)
        progress(f"tune: round {round_number}/{rounds}: {', '.join(s.family for s in running)}, "
                 f"{share:.1f} s each ({left:.0f} s left)")
        for spend in running:
            _spend_share(spend, studies[spend.family], objectives[spend.family], share, started, time_budget,
                         progress)
        if round_number < rounds:
            left = time_budget - (time.monotonic() - started)
            halve(spends, max(left, 0.0) / (rounds - round_number) / math.ceil(len(running) / 2), round_number)
    spent = time.monotonic() - started
    for spend in spends:
        if not spend.stopped:
            spend.stopped = "the budget was spent" + ("" if spend.trials else " before its first trial")
    results = {s.family: search_result(s.family, studies[s.family], data.task, tuning) for s in spends if s.trials}
    record = {"time_budget": time_budget, "seconds": round(spent, 3), "rounds": rounds,
              "families": {s.family: {**_rounded(asdict(s)), "trial_seconds": round(s.trial_seconds, 3)}
                           for s in spends}}
    return results, record


def _spend_share(spend: FamilySpend, study: optuna.Study, objective, share: float, started: float,
                 time_budget: float, progress: Callable[[str], None]) -> None:
    """Run `spend.family`'s trials until its `share` of the round, the budget, or its cap is spent."""
    begun = time.monotonic()
    spend.per_round.append(0)
    while spend.trials < spend.cap:
        start = time.monotonic()
        if start - begun >= share or start - started >= time_budget:
            break
        study.optimize(objective, n_trials=1)
        spend.starts.append(start - started)
        spend.trials += 1
        spend.per_round[-1] += 1
        spend.seconds += time.monotonic() - start
        trial = finished_trials(study)[-1]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            spend.best = max(spend.best, float(trial.value))
        shown = "stopped early (below the median)" if trial.state == optuna.trial.TrialState.PRUNED else \
            f"score {trial.value:.4f}"
        progress(f"tune ({spend.family}): trial {spend.trials} {shown} ({time.monotonic() - start:.1f} s)")
    if spend.trials >= spend.cap:
        spend.stopped = "reached its trials cap"


def _rounded(spend: dict) -> dict:
    out = {key: round(value, 3) if isinstance(value, float) and math.isfinite(value) else value
           for key, value in spend.items()}
    out["starts"] = [math.floor(start * 1000) / 1000 for start in spend["starts"]]  # down: still before the budget
    out["best"] = spend["best"] if math.isfinite(spend["best"]) else None
    return out


def budget_markdown(record: dict, reported: Callable[[float], float], metric: str) -> str:
    """The spending record as a Markdown table (the search step's KFP visualisation)."""
    lines = [f"# How the {record['time_budget']:g} s search budget was spent", "", _spent_line(record), "",
             f"| family | trials | seconds | s per trial | best {metric} | stopped |", "|---|---|---|---|---|---|"]
    for family, spend in record["families"].items():
        best = "" if spend["best"] is None else f"{reported(spend['best']):.4f}"
        lines.append(f"| {family} | {spend['trials']} | {spend['seconds']:.1f} | {spend['trial_seconds']:.2f} | "
                     f"{best} | {spend['stopped']} |")
    return "\n".join(lines) + "\n"


def _spent_line(record: dict) -> str:
    """The record's seconds and rounds, the rows the search fit on, and what the features step spent first."""
    line = f"{record['seconds']:.1f} s in {record['rounds']} rounds of successive halving across families"
    if "rows" in record:
        line += f", on {record['rows']['train']:,} train and {record['rows']['valid']:,} valid rows (the search sample)"
    if record.get("features_seconds"):
        line += f"; before it, the features step's search spent {record['features_seconds']:.1f} s of the budget"
    return line + "."
