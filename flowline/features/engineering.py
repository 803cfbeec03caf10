"""Automated feature engineering: the FeatureSet's plan, chosen by validation score.

Starting from encodings by cardinality and numbers as they are, a greedy search tries
one change at a time and keeps it when the validation score of two fast proxy models
(fixed-parameter XGBoost and a regularised linear model, averaged) improves by more
than MIN_GAIN:

1. categorical encodings, per column, among those its cardinality allows (one-hot up to
   ONE_HOT_MAX_CARDINALITY categories or MAX_CATEGORIES at most, target encoding fitted
   out of fold, frequency);
2. log1p of non-negative numeric columns (for the linear models and networks);
3. pairwise products, ratios and squares of the most important numeric columns, added
   forward in order of their gain alone, at most `features.max_generated`;
4. with a time column: calendar parts of a datetime; with an entity column: recency and
   rolling counts (and sums of `features.amount_columns`) over windows, unless
   `features.entity_outputs` fixes them (a use case that reuses another's definition gets the
   owner's, so both compute the same entity features).

Two proxies rather than one, because the candidates that follow are trees, linear
models and networks: a change that only one family can use still has to pay for itself
on average.

The proxies fit and score on the search sample (flowline/splitting.py, `search_sample`: at most
`tuning.search_rows` train rows and the same share of valid), so the search's cost stops growing
with the data; the chosen plan is then fitted on all of train. Under a `tuning.time_budget`
the search tries no candidate once FEATURES_SHARE of the budget is spent (the model search
spends the rest, flowline/tuning.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from flowline.budget import FEATURES_SHARE
from flowline.features.feature_set import FeatureSet
from flowline.features.kinds import FeatureError
from flowline.features.plan import MAX_CATEGORIES, ONE_HOT_MAX_CARDINALITY, FeaturePlan, default_plan
from flowline.models.families import TrainingData, booster_gains, fit_candidate
from flowline.splitting import search_sample
from flowline.use_case import TuningSpec, UseCase

MIN_GAIN = 0.0005
INTERACTION_COLUMNS = 5  # the most important numeric columns whose pairs are tried
PROXY_XGBOOST = {"eta": 0.1, "max_depth": 4, "min_child_weight": 1.0, "subsample": 0.8, "colsample_bytree": 0.8,
                 "lambda": 1.0, "alpha": 0.0}
PROXY_LINEAR = {"binary": {"C": 0.1, "l1_ratio": 0.0, "class_weight": "none"}, "regression": {"alpha": 1.0}}
HOUR, DAY = 3600.0, 86400.0
DATETIME_WINDOWS = (HOUR, DAY, 7 * DAY, 30 * DAY)


@dataclass
class SearchLog:
    """Every candidate tried, with its score and whether it was kept, and the train and valid rows the proxies
    fit and scored on (the search sample)."""

    start_score: float
    score: float
    tried: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    rows: tuple[int, int] = (0, 0)
    stopped: str = ""  # why it tried no more candidates, when not for lack of them
    off: str = ""  # why it did not search at all

    def markdown(self) -> str:
        lines = [f"**Validation score (mean of the two proxies):** {self.start_score:.4f} -> {self.score:.4f}, "
                 f"{len(self.tried)} candidates in {self.seconds:.1f} s, on {self.rows[0]:,} train and "
                 f"{self.rows[1]:,} valid rows" + (f"; {self.stopped}" if self.stopped else ""), "",
                 "| step | candidate | score | kept |", "|---|---|---|---|"]
        lines += [f"| {t['step']} | {t['candidate']} | {t['score']:.4f} | {'yes' if t['kept'] else ''} |"
                  for t in self.tried]
        return "\n".join(lines) + "\n"


class _Search:
    def __init__(self, train: pd.DataFrame, valid: pd.DataFrame, use_case: UseCase,
                 progress: Callable[[str], None], deadline: float = math.inf) -> None:
        self.train, self.valid, self.use_case, self.progress = train, valid, use_case, progress
        self.deadline = deadline  # time.monotonic() after which no candidate is tried
        self.proxy_tuning = TuningSpec(max_boost_rounds=500, early_stopping_rounds=30, metric=use_case.tuning.metric,
                                       seed=use_case.tuning.seed)
        self.log = SearchLog(0.0, 0.0)
        self.importance: dict[str, float] = {}

    def score(self, plan: FeaturePlan, keep_importance: bool = False) -> float:
        feature_set = FeatureSet.fit(self.train, self.use_case, plan)
        data = TrainingData.from_splits(feature_set, self.train, self.valid, self.use_case.task)
        trees = fit_candidate("xgboost", PROXY_XGBOOST, data, self.proxy_tuning)
        linear = fit_candidate("linear", PROXY_LINEAR[self.use_case.task], data, self.proxy_tuning)
        if keep_importance:
            owners = feature_set.owners
            for position, gain in booster_gains(trees.model).items():
                for column, share in zip(feature_set.input_columns, owners[position]):
                    self.importance[column] = self.importance.get(column, 0.0) + share * gain
        return (trees.valid_score + linear.valid_score) / 2

    def out_of_time(self) -> bool:
        """Whether the search's share of the time budget is spent (then the log says so)."""
        if time.monotonic() < self.deadline:
            return False
        if not self.log.stopped:
            self.log.stopped = "stopped: its share of tuning.time_budget was spent"
            self.progress(f"features: {self.log.stopped}")
        return True

    def record(self, step: str, candidate: str, score: float, kept: bool) -> None:
        self.log.tried.append({"step": step, "candidate": candidate, "score": score, "kept": kept})
        self.progress(f"features: {step} {candidate}: {score:.4f}{' (kept)' if kept else ''}")

    def try_change(self, step: str, candidate: str, plan: FeaturePlan, best: float) -> float:
        score = self.score(plan)
        self.record(step, candidate, score, kept=score > best + MIN_GAIN)
        return score


def _encodings_for(cardinality: int) -> tuple[str, ...]:
    if cardinality <= 2:
        return ("one_hot",)
    if cardinality <= ONE_HOT_MAX_CARDINALITY:
        return ("one_hot", "target")
    if cardinality <= MAX_CATEGORIES:
        return ("target", "one_hot", "frequency")
    return ("target", "frequency")


def _windows(seconds: pd.Series, is_datetime: bool) -> tuple[float, ...]:
    if is_datetime:
        return DATETIME_WINDOWS
    span = float(seconds.max() - seconds.min()) if seconds.notna().any() else 0.0
    return tuple(w for w in (span / 1000, span / 100, span / 10) if w > 0)


def search_off(use_case: UseCase, rows: int) -> str:
    """Why the plan is not searched, or "" when it is: the use case turns the search off, or train + valid has
    fewer than `features.search_min_rows` rows, where the valid split is too small for the proxies' gains to
    be more than noise, and no entity column is declared (its windows are found by the search alone)."""
    if not use_case.features.search:
        return "off (`features.search: false`)"
    if rows < use_case.features.search_min_rows and use_case.features.entity_column is None:
        return (f"{rows:,} train + valid rows, fewer than `features.search_min_rows` ({use_case.features.search_min_rows:,}): "
                f"encodings by cardinality, numbers as they are")
    return ""


def engineer_features(
    train: pd.DataFrame, valid: pd.DataFrame, use_case: UseCase, progress: Callable[[str], None] = print,
    timed: bool = True,
) -> tuple[FeatureSet, SearchLog]:
    """Choose the plan on `valid` (unless `search_off` says why not) and fit the FeatureSet on `train`. With `timed`
    (and a `tuning.time_budget`) the search stops at its share of the budget; untimed it runs to its end, so that the
    plan does not depend on the machine's speed (`--trials`, a Katib trial fitting the plan itself)."""
    started = time.monotonic()
    fixed = use_case.features.entity_outputs
    if use_case.features.entity_features_from and fixed is None:
        raise FeatureError(f"use case {use_case.name!r} reuses the entity features of "
                           f"{use_case.features.entity_features_from!r} (features.entity_features_from), but their "
                           f"window outputs are not set (features.entity_outputs); `flowline run`, `compile` and "
                           f"`submit` set them from the owner's champion package")
    plan = default_plan(train, use_case)
    off = search_off(use_case, len(train) + len(valid))
    if off:
        progress(f"features: no search: {off}")
        plan = _with_entity_outputs(plan, fixed or [])
        return FeatureSet.fit(train, use_case, plan), SearchLog(float("nan"), float("nan"), off=off)
    budget = use_case.tuning.time_budget
    search = _Search(*search_sample(train, valid, use_case), use_case, progress,
                     deadline=started + FEATURES_SHARE * budget if budget and timed else math.inf)
    search.log.rows = (len(search.train), len(search.valid))
    best = search.score(plan, keep_importance=True)
    search.log.start_score = best
    progress(f"features: start {best:.4f} (encodings by cardinality, numbers as they are)")
    specs = use_case.columns

    for column, encoding in plan.encodings.items():
        cardinality = int(train[column].nunique())
        for alternative in _encodings_for(cardinality):
            if alternative != plan.encodings[column] and not search.out_of_time():
                candidate = plan.with_encoding(column, alternative)
                score = search.try_change("encoding", f"{column}: {alternative}", candidate, best)
                if score > best + MIN_GAIN:
                    plan, best = candidate, score

    numeric = [c for c in use_case.feature_columns if specs[c].is_numeric and train[c].nunique() > 2]
    for column in numeric:
        if train[column].min() >= 0 and not search.out_of_time():
            candidate = plan.with_transform(column, "log1p")
            score = search.try_change("transform", f"log1p({column})", candidate, best)
            if score > best + MIN_GAIN:
                plan, best = candidate, score

    ranked = sorted(numeric, key=lambda c: -search.importance.get(c, 0.0))[:INTERACTION_COLUMNS]
    generated = []
    for i, left in enumerate(ranked):
        generated.append(({"kind": "product", "left": left, "right": left}, f"{left}^2"))
        for right in ranked[i + 1:]:
            generated.append(({"kind": "product", "left": left, "right": right}, f"{left}*{right}"))
            generated.append(({"kind": "ratio", "numerator": left, "denominator": right}, f"{left}/{right}"))
            generated.append(({"kind": "ratio", "numerator": right, "denominator": left}, f"{right}/{left}"))
    # A time column with one value in train (the cut-off of customer rows) has no calendar to learn from.
    if (use_case.time_column and specs[use_case.time_column].type == "datetime"
            and train[use_case.time_column].nunique() > 1):
        generated.append(({"kind": "calendar"}, f"calendar({use_case.time_column})"))
    plan, best = _forward(search, plan, best, generated, "generated", use_case.features.max_generated)

    entity = use_case.features.entity_column
    if fixed:
        plan = _with_entity_outputs(plan, fixed)
        best = search.score(plan)
        search.record("time", f"fixed: {fixed}", best, kept=True)
    elif fixed is None and entity and use_case.features.max_generated > len(plan.generated):
        is_datetime = specs[use_case.time_column].type == "datetime"
        outputs = [["recency"]]
        for window in _windows(train[use_case.time_column], is_datetime):
            outputs.append(["count", window])
            outputs += [["sum", window, amount] for amount in use_case.features.amount_columns]
        plan, best = _forward_entity(search, plan, best, outputs, use_case.features.max_generated - len(plan.generated))

    search.log.score, search.log.seconds = best, time.monotonic() - started
    return FeatureSet.fit(train, use_case, plan), search.log


def _with_entity_outputs(plan: FeaturePlan, outputs: list[list]) -> FeaturePlan:
    """`plan` with an entity block of exactly `outputs` (none when the list is empty)."""
    return plan.with_generated({"kind": "entity", "outputs": [list(o) for o in outputs]}) if outputs else plan


def _forward(search: _Search, plan: FeaturePlan, best: float, candidates: list[tuple[dict, str]], step: str,
             limit: int) -> tuple[FeaturePlan, float]:
    """Score each candidate alone, then add them in order of that score while each still helps."""
    start, alone = best, []
    for feature, label in candidates:
        if search.out_of_time():
            break
        score = search.score(plan.with_generated(feature))
        search.record(step, f"{label} alone", score, kept=False)
        alone.append((score, feature, label))
    added = 0
    for score_alone, feature, label in sorted(alone, key=lambda item: -item[0]):
        if added >= limit or score_alone <= start + MIN_GAIN or search.out_of_time():
            break
        candidate = plan.with_generated(feature)
        score = score_alone if added == 0 else search.score(candidate)  # the first is the plan scored alone
        kept = score > best + MIN_GAIN
        search.record(step, f"+ {label}", score, kept)
        if kept:
            plan, best, added = candidate, score, added + 1
    return plan, best


def _forward_entity(search: _Search, plan: FeaturePlan, best: float, outputs: list[list], limit: int
                    ) -> tuple[FeaturePlan, float]:
    """Grow one entity block output by output, keeping each that improves the score."""
    kept: list[list] = []
    for output in outputs:
        if len(kept) >= limit or search.out_of_time():
            break
        candidate = plan.with_generated({"kind": "entity", "outputs": [*kept, output]})
        score = search.try_change("time", " ".join(str(o) for o in output), candidate, best)
        if score > best + MIN_GAIN:
            kept.append(output)
            best = score
    if kept:
        plan = plan.with_generated({"kind": "entity", "outputs": kept})
    return plan, best
