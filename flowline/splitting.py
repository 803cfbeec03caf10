"""The fixed evaluation protocol: seeded, stratified train/valid/test, or time-ordered."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from flowline.use_case import UseCase

PARTS = ("train", "valid", "test")


class SplitError(ValueError):
    """The rows cannot give train, valid and test that a model can learn from and be scored on."""


SEARCH_FOLDS = 5  # trials on small data cross-validate train + valid in 5 folds, stratified by label


def label_counts(part: pd.DataFrame, use_case: UseCase) -> dict[str, int]:
    """Rows of each allowed label value (binary tasks), zeros included."""
    column = part[use_case.label.column]
    return {value: int((column == value).sum()) for value in use_case.label.values}


def _check_both_classes(parts: dict[str, pd.DataFrame], use_case: UseCase) -> None:
    """Binary tasks: train, valid and test each need the positive class and another one.

    Without both, training cannot estimate a base rate and evaluation cannot compute an
    AUC; XGBoost's own message ("base_score must be in (0,1)") names neither the label
    nor the split.
    """
    one_class = [name for name in PARTS if not _has_both_classes(parts[name], use_case)]
    if one_class:
        counts = "; ".join(f"{name} {label_counts(parts[name], use_case)}" for name in PARTS)
        raise SplitError(
            f"label {use_case.label.column!r} needs both classes in train, valid and test, but "
            f"{', '.join(one_class)} {'has' if len(one_class) == 1 else 'have'} only one. "
            f"Rows per label value: {counts}. Give more rows of the rarer class, or a split that leaves some in "
            f"each part."
        )


def split_frame(frame: pd.DataFrame, use_case: UseCase) -> dict[str, pd.DataFrame]:
    """Return {"train", "valid", "test"} frames.

    Stratified (DESIGN.md): over all rows in file order, test is carved first with
    `train_test_split(test_size, stratify=label, random_state=seed)`, then valid from
    train the same way. Time: rows are ordered by the time column and the latest
    `test_size` become test, the latest `valid_size` of the rest become valid. Latest: the
    rows at the latest time value (a snapshot, such as customers at a cut-off) are test;
    `valid_size` of the first id column's values among the other rows, drawn with the
    seed, give valid, so that an entity's rows stay on one side. Binary tasks: raises
    SplitError unless every part holds both classes.
    """
    parts = _split(frame, use_case)
    if use_case.task == "binary":
        _check_both_classes(parts, use_case)
        _check_cross_fitting(parts, use_case)
    return parts


def cross_fitting_rows(use_case: UseCase, rows: int) -> int:
    """How many of `rows` (train + valid) the candidates are cross-fitted on: all of them, or at most enough
    that each fold's model fits on `tuning.search_rows` rows, the most the search fit on."""
    cap, folds = use_case.tuning.search_rows, use_case.ensemble.folds
    return rows if cap is None else min(rows, cap * folds // (folds - 1))


def _check_cross_fitting(parts: dict[str, pd.DataFrame], use_case: UseCase) -> None:
    """Binary tasks: train + valid (or the stratified sample of them cross-fitting takes, `cross_fitting_rows`)
    are cross-validated in folds stratified by label (`ensemble.folds`, and SEARCH_FOLDS), and each held-out fold
    needs both classes, so each class needs as many rows there as folds. With fewer, scikit-learn only warns, a
    fold scores NaN, and the run died on an infinite trial score that named neither the label nor the counts."""
    folds = max(use_case.ensemble.folds, SEARCH_FOLDS)
    train, valid = label_counts(parts["train"], use_case), label_counts(parts["valid"], use_case)
    counts = {value: train[value] + valid[value] for value in train}  # counted per part: no copy of the rows
    rows = len(parts["train"]) + len(parts["valid"])
    rarer = min(counts[use_case.label.positive], rows - counts[use_case.label.positive])
    sampled = cross_fitting_rows(use_case, rows)
    if rarer < folds:
        raise SplitError(
            f"label {use_case.label.column!r}: train + valid hold {counts}, and cross-validation in {folds} folds "
            f"needs at least {folds} rows of each class there. Give more rows of the rarer class.")
    if rarer * sampled // rows < folds:
        raise SplitError(
            f"label {use_case.label.column!r}: train + valid hold {counts}, and cross-fitting takes a stratified "
            f"{sampled:,} of their {rows:,} rows (tuning.search_rows {use_case.tuning.search_rows:,}), about "
            f"{rarer * sampled // rows} of the rarer class: cross-validation in {folds} folds needs at least "
            f"{folds}. Raise tuning.search_rows, or set it to null to search and cross-fit on every row.")


def _split(frame: pd.DataFrame, use_case: UseCase) -> dict[str, pd.DataFrame]:
    spec = use_case.split
    if spec.method == "latest":
        time = frame[use_case.time_column]
        test, rest = frame[time == time.max()], frame[time != time.max()]
        if rest.empty:
            raise ValueError(f"split latest: every row is at {time.max()}; nothing is left to train on")
        key = use_case.id_columns[0]
        entities = pd.Series(rest[key].unique())
        _, valid_entities = train_test_split(entities, test_size=spec.valid_size, random_state=spec.seed)
        in_valid = rest[key].isin(valid_entities)
        return {"train": rest[~in_valid], "valid": rest[in_valid], "test": test}
    if spec.method == "time":
        ordered = frame.sort_values(use_case.time_column, kind="stable")
        n_test = round(len(ordered) * spec.test_size)
        rest, test = ordered.iloc[: len(ordered) - n_test], ordered.iloc[len(ordered) - n_test :]
        n_valid = round(len(rest) * spec.valid_size)
        return {"train": rest.iloc[: len(rest) - n_valid], "valid": rest.iloc[len(rest) - n_valid :], "test": test}

    def stratify(part: pd.DataFrame) -> pd.Series | None:
        return part[use_case.label.column] if use_case.task == "binary" else None

    if use_case.task == "binary":
        _check_stratifiable(frame, use_case)
    rest, test = train_test_split(
        frame, test_size=spec.test_size, stratify=stratify(frame), random_state=spec.seed
    )
    train, valid = train_test_split(rest, test_size=spec.valid_size, stratify=stratify(rest), random_state=spec.seed)
    return {"train": train, "valid": valid, "test": test}


def search_sample(train: pd.DataFrame, valid: pd.DataFrame, use_case: UseCase) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows feature selection and model search fit and score on: train and valid as they are, or, when train
    has more than `tuning.search_rows` rows, that many train rows and the same share of valid.

    Why: a search's cost is its trials times the cost of one fit, so on all rows it grows with the data; on a
    sample of fixed size it does not, and the chosen plan and parameters are refit on all rows (train step).
    The sample is drawn with `tuning.seed` (the same seed gives the same rows), stratified by the label for binary
    tasks, and keeps the rows' order.
    """
    cap = use_case.tuning.search_rows
    if cap is None or len(train) <= cap:
        return train, valid
    valid_rows = round(len(valid) * cap / len(train))
    return train.iloc[sample_positions(train, cap, use_case)], valid.iloc[sample_positions(valid, valid_rows, use_case)]


def sample_positions(part: pd.DataFrame, rows: int, use_case: UseCase) -> np.ndarray:
    """The positions of `rows` of `part` (all of them when it has no more), in order: drawn with `tuning.seed`,
    stratified by the label for binary tasks (unless a class has one row, or fewer rows are left out than classes)."""
    positions = np.arange(len(part))
    if rows >= len(part):
        return positions
    labels = part[use_case.label.column] if use_case.task == "binary" else None
    if labels is not None and (labels.value_counts().min() < 2 or len(part) - rows < labels.nunique()):
        labels = None  # too few to stratify: scikit-learn needs two rows of each class and one of each left out
    chosen, _ = train_test_split(positions, train_size=rows, stratify=labels, random_state=use_case.tuning.seed)
    return np.sort(chosen)


def _has_both_classes(part: pd.DataFrame, use_case: UseCase) -> bool:
    positive = part[use_case.label.column] == use_case.label.positive
    return bool(positive.any() and not positive.all())


def _check_stratifiable(frame: pd.DataFrame, use_case: UseCase) -> None:
    """A stratified split needs at least one row of each class per part; scikit-learn's own error
    ("The least populated class in y has only 1 member") names neither the label nor the counts."""
    counts = label_counts(frame, use_case)
    positives = counts[use_case.label.positive]
    if min(positives, len(frame) - positives) < len(PARTS):
        raise SplitError(
            f"label {use_case.label.column!r} needs both classes in train, valid and test, so at least "
            f"{len(PARTS)} rows of each; the data has {counts}. Give more rows of the rarer class."
        )


def fold_splits(task: str, y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) for each of `folds` seeded folds, stratified by label for binary tasks."""
    if task == "binary":
        return list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))
