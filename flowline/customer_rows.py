"""Customer rows from a transaction log: one row per entity and cut-off, for any log with an entity,
a time and an amount column (a use case's `transactions`).

Each row holds what is known about the entity at the cut-off, from its transactions on
or before it, and as the label the amount it spent after it. Transactions on the same
day count as one purchase (the usual convention of buy-till-you-die models). Times are
in weeks. Returns (negative amounts) are netted: the label is net spend floored at zero.

- Rows at each of `training_cutoffs` are what the model learns from. Their label is the
  spend between the cut-off and `calibration_end`, scaled to `horizon_days`: the spend
  rate of the known window, over the horizon the model will be asked about. Nothing
  after `calibration_end` reaches them.
- Rows at `calibration_end` are what the model is applied to (and evaluated on): the
  label is the spend over the `horizon_days` that follow, which no training row saw.

The features describe the entity as of its own cut-off, each in a form that means the
same at any cut-off (README.md): recency relative to the entity's age, frequency and
spend per week of its lifetime, monetary value, inter-purchase time, activity and spend
in recent windows, and the trend between the last two quarters.
`customer_rows_use_case` is the use case the rest of the pipeline sees: these columns,
the label, and the `latest` split (test = the rows at calibration_end); it keeps the log's own
use case as `transaction_log`, so that a package can score a customer from its transactions.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from flowline.use_case import UseCase

CUTOFF_COLUMN = "cutoff"
DAYS_PER_WEEK = 7.0
WINDOW_WEEKS = (4, 13)
FEATURE_COLUMNS = (
    "mean_weeks_between", "first_amount", "mean_repeat_amount", "max_amount",
    *(f"purchases_last_{w}w" for w in WINDOW_WEEKS), *(f"amount_last_{w}w" for w in WINDOW_WEEKS),
    "amount_trend", "purchases_per_week", "amount_per_week", "lapsed_fraction",
)


# The test rows' label is the spend over the horizon after calibration_end, so the log must reach the window's end:
# its last transaction in the window may fall short of the end by at most this share of it (or MIN_GAP_DAYS).
HOLDOUT_COVERAGE = 0.9
MIN_GAP_DAYS = 7


class CustomerRowsError(ValueError):
    """The transaction log cannot give rows for the use case's cut-offs."""


def daily_purchases(log: pd.DataFrame, use_case: UseCase) -> pd.DataFrame:
    """One row per entity and day: (entity, day, amount summed over the day's transactions).

    Each entity's transactions are summed in one canonical order (entity, time, amount), so the same
    transactions in any order give bit-identical sums: the batch and the online computations agree exactly."""
    spec = use_case.transactions
    frame = pd.DataFrame({"entity": log[spec.entity_column].astype(str),
                          "time": pd.to_datetime(log[use_case.time_column]),
                          "amount": log[spec.amount_column].astype("float64")})
    frame = frame.sort_values(["entity", "time", "amount"], kind="mergesort", ignore_index=True)
    frame["day"] = frame["time"].dt.normalize()
    return frame.groupby(["entity", "day"], as_index=False, sort=True)["amount"].sum()


def features_at(purchases: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """The FEATURE_COLUMNS of every entity that bought on or before `as_of`, indexed by entity: what is
    known about it then, from `daily_purchases` on or before that day (returns netted), and nothing after."""
    return _known_at(purchases, pd.Timestamp(as_of))[list(FEATURE_COLUMNS)]


def rows_at(purchases: pd.DataFrame, cutoff: date, window_end: date, horizon_days: int) -> pd.DataFrame:
    """`features_at(purchases, cutoff)` and the label: the spend in (cutoff, window_end], scaled from that
    window's length to `horizon_days`.

    Returns (negative amounts) are netted against purchases, in the features and in the
    label; a label whose returns outweigh its purchases is 0, never negative: what a
    customer brings cannot be below nothing, and a Tweedie loss cannot take it."""
    cut, end = pd.Timestamp(cutoff), pd.Timestamp(window_end)
    rows = features_at(purchases, cutoff)
    following = purchases[(purchases["day"] > cut) & (purchases["day"] <= end)]
    spent = following.groupby("entity")["amount"].sum().reindex(rows.index, fill_value=0.0)
    rows["label"] = spent.clip(lower=0.0) * horizon_days / (end - cut).days  # returns: net spend, floored at 0
    return rows


def _known_at(purchases: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """The features and the intermediate columns they come from, per entity that bought by `cut`."""
    past = purchases[purchases["day"] <= cut]
    grouped = past.groupby("entity", sort=True)
    first, last = grouped["day"].min(), grouped["day"].max()
    count = grouped.size()
    total = grouped["amount"].sum()
    first_amount = grouped["amount"].first()
    rows = pd.DataFrame(index=first.index)  # intermediate columns first; FEATURE_COLUMNS are returned
    rows["purchases"] = count.astype("float64")
    rows["repeat_purchases"] = rows["purchases"] - 1
    rows["weeks_since_first"] = _weeks(cut - first)
    rows["weeks_since_last"] = _weeks(cut - last)
    rows["active_weeks"] = _weeks(last - first)
    repeats = rows["repeat_purchases"]
    rows["mean_weeks_between"] = np.where(repeats > 0, rows["active_weeks"] / repeats.clip(lower=1),
                                          rows["weeks_since_first"])
    rows["total_amount"] = total
    rows["first_amount"] = first_amount
    rows["mean_repeat_amount"] = np.where(repeats > 0, (total - first_amount) / repeats.clip(lower=1), 0.0)
    rows["max_amount"] = grouped["amount"].max()
    for w in WINDOW_WEEKS:
        recent = past[past["day"] > cut - pd.Timedelta(weeks=w)].groupby("entity")["amount"]
        rows[f"purchases_last_{w}w"] = recent.size().reindex(rows.index, fill_value=0).astype("float64")
        rows[f"amount_last_{w}w"] = recent.sum().reindex(rows.index, fill_value=0.0)
    before = past[(past["day"] > cut - pd.Timedelta(weeks=26)) & (past["day"] <= cut - pd.Timedelta(weeks=13))]
    rows["amount_trend"] = rows["amount_last_13w"] - before.groupby("entity")["amount"].sum().reindex(
        rows.index, fill_value=0.0)
    # Rates over the entity's own lifetime (+1 week, so a first purchase on the cut-off day stays finite):
    # unlike counts and sums, they mean the same at every cut-off.
    lifetime = rows["weeks_since_first"] + 1
    rows["purchases_per_week"] = rows["purchases"] / lifetime
    rows["amount_per_week"] = rows["total_amount"] / lifetime
    rows["lapsed_fraction"] = rows["weeks_since_last"] / lifetime
    return rows


def _weeks(delta: pd.Series) -> pd.Series:
    return delta.dt.days / DAYS_PER_WEEK


def build_customer_rows(log: pd.DataFrame, use_case: UseCase) -> pd.DataFrame:
    """The training rows at every training cut-off and the scoring rows at calibration_end, in one frame
    with the entity, the cut-off (ISO date), the feature columns and the label."""
    spec = use_case.transactions
    purchases = daily_purchases(log, use_case)
    log_end = purchases["day"].max().date() if len(purchases) else None
    if log_end is None or log_end <= spec.calibration_end:
        raise CustomerRowsError(
            f"the log has no transaction after calibration_end {spec.calibration_end} (it ends {log_end}): "
            f"nothing to label the rows at calibration_end with")
    holdout_end = spec.calibration_end + timedelta(days=spec.horizon_days)
    days = purchases["day"]
    in_window = days[(days > pd.Timestamp(spec.calibration_end)) & (days <= pd.Timestamp(holdout_end))]
    allowed_gap = max(MIN_GAP_DAYS, int(spec.horizon_days * (1 - HOLDOUT_COVERAGE)))
    if in_window.empty or (holdout_end - in_window.max().date()).days > allowed_gap:
        last = (f"is on {in_window.max().date()}" if len(in_window)
                else f"is none (the next after it is on {log_end})")
        raise CustomerRowsError(
            f"the log's last transaction in the {spec.horizon_days}-day window after calibration_end "
            f"{spec.calibration_end} {last}, more than {allowed_gap} days before the window ends on {holdout_end}: "
            "the log stops before the window it labels the test rows with, which would count part of their spend "
            f"as all of it. Give a log that reaches {holdout_end}, or an earlier transactions.calibration_end")
    frames = []
    for cutoff in sorted(spec.training_cutoffs):
        frames.append(_labelled(rows_at(purchases, cutoff, spec.calibration_end, spec.horizon_days), cutoff))
    frames.append(_labelled(rows_at(purchases, spec.calibration_end, holdout_end, spec.horizon_days),
                            spec.calibration_end))
    rows = pd.concat(frames, ignore_index=True)
    return rows.rename(columns={"entity": spec.entity_column, "label": use_case.label.column})


def _labelled(rows: pd.DataFrame, cutoff: date) -> pd.DataFrame:
    rows = rows.reset_index()
    rows.insert(1, CUTOFF_COLUMN, cutoff.isoformat())
    return rows


def customer_rows_use_case(use_case: UseCase) -> UseCase:
    """The use case of the customer rows: what split, features, training and serving see."""
    spec = use_case.transactions
    document = use_case.model_dump(mode="json", exclude={"transactions", "columns", "id_columns", "time_column",
                                                         "sensitive_attributes", "fairness"})
    document.update(
        columns={spec.entity_column: {"type": "string"}, CUTOFF_COLUMN: {"type": "datetime"},
                 **{name: {"type": "number"} for name in FEATURE_COLUMNS}},
        id_columns=[spec.entity_column], time_column=CUTOFF_COLUMN,
        features={**document["features"], "entity_column": None, "amount_columns": []},
        transaction_log=use_case.model_dump(mode="json"),
    )
    return UseCase.model_validate(document)
