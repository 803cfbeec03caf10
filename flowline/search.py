"""Searching one family's space with Optuna: warm starts, then TPE sampling and median stopping, seeded.

The local twin of a Katib Experiment (flowline/katib.py): the same space,
TPE, and the median rule Katib's `medianstop` applies (a trial whose intermediate
validation score falls below the median of earlier trials at the same step stops). A trial's
score is `trial_score`'s: on valid, or cross-validated over train + valid on small data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import optuna

from flowline.models.families import TrainingData, objective_metric, trial_score
from flowline.search_space import SearchSpace, search_space
from flowline.use_case import TuningSpec

# Katib's medianstop settings, used by both backends.
MEDIAN_STOP = {"min_trials_required": 3, "start_step": 4}


@dataclass(frozen=True)
class Trial:
    """One completed trial of a search: its parameters, the rounds or epochs it was early-stopped at, its score."""

    params: dict
    iterations: int
    valid_score: float


@dataclass(frozen=True)
class SearchResult:
    """The best parameter set of a family's search, as the train step reads it, and the train rows the search fit
    on (None where not recorded: Katib's trials sample in their pods, katib_experiments/trial.py).

    `runners_up` are the search's other completed trials, best first (as dicts of `Trial`'s fields): the train
    step serves a boosted family as the average of its `ensemble.average_trials` best (training.py)."""

    family: str
    params: dict
    valid_score: float
    iterations: int
    trials: int
    stopped_early: int
    backend: str
    metric: str
    rows: Optional[int] = None
    runners_up: list[dict] = field(default_factory=list)

    def best_trials(self, count: int) -> list[Trial]:
        """The best trial and then the runners-up, at most `count` of them."""
        best = Trial(self.params, self.iterations, self.valid_score)
        return [best, *(Trial(**trial) for trial in self.runners_up)][:count]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> SearchResult:
        return cls(**json.loads(Path(path).read_text()))

    @staticmethod
    def skipped(path: str | Path) -> Optional[str]:
        """Why the search saved at `path` has no result (a family left out, or given no trial), or None."""
        return json.loads(Path(path).read_text()).get("skipped")


def family_objective(family: str, space: SearchSpace, data: TrainingData, tuning: TuningSpec):
    """Optuna's objective for `family`: fit one parameter set, report intermediate scores (pruning), return the
    validation score."""

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)

        def report(step: int, score: float) -> None:
            trial.report(score, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        score, iterations = trial_score(family, params, data, tuning, report)
        trial.set_user_attr("iterations", iterations)
        return score

    return objective


def seeded_study(tuning: TuningSpec, space: SearchSpace) -> optuna.Study:
    """A study with the seeded TPE sampler and the median stopping rule Katib applies too, whose first trials are
    the space's portfolio in order (warm starts: a short budget starts from good points; they count in the budget)."""
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tuning.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STOP["min_trials_required"],
                                           n_warmup_steps=MEDIAN_STOP["start_step"]),
    )
    for point in space.portfolio:
        study.enqueue_trial(dict(point))
    return study


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that ran (completed or stopped early), in order; portfolio points not yet run wait apart."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))


def search_result(family: str, study: optuna.Study, task: str, tuning: TuningSpec) -> SearchResult:
    """The best trial of `family`'s study as the train step reads it, and the other completed ones, best first
    (a trial stopped early has no final score and is not among them)."""
    best = study.best_trial
    ran = finished_trials(study)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in ran)
    completed = sorted((t for t in ran if t.state == optuna.trial.TrialState.COMPLETE and t.number != best.number),
                       key=lambda t: -t.value)
    return SearchResult(
        family=family, params=dict(best.params), valid_score=float(best.value),
        iterations=int(best.user_attrs["iterations"]), trials=len(ran), stopped_early=pruned,
        backend="optuna", metric=objective_metric(task, tuning.metric)[0],
        runners_up=[asdict(Trial(dict(t.params), int(t.user_attrs["iterations"]), float(t.value))) for t in completed],
    )


def optuna_search(
    family: str,
    data: TrainingData,
    tuning: TuningSpec,
    trials: int,
    progress: Callable[[str], None] = print,
    prefix: Optional[str] = None,
) -> SearchResult:
    """Run `trials` trials of `family` (or until `tuning.timeout_seconds`); return the best."""
    prefix = prefix or f"tune ({family})"

    def show(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = f"{prefix}: trial {trial.number + 1}/{trials}"
        if trial.state == optuna.trial.TrialState.PRUNED:
            progress(f"{done} stopped early (below the median)")
        elif trial.state == optuna.trial.TrialState.COMPLETE:
            progress(f"{done} score {trial.value:.4f} (best {study.best_value:.4f})")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = search_space(family, data.task, tuning)
    study = seeded_study(tuning, space)
    study.optimize(family_objective(family, space, data, tuning), n_trials=trials, timeout=tuning.timeout_seconds,
                   callbacks=[show])
    return search_result(family, study, data.task, tuning)
