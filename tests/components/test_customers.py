"""The customer-rows step: one row per entity and cut-off from any transaction log."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from flowline.customer_rows import (
    CUTOFF_COLUMN,
    FEATURE_COLUMNS,
    CustomerRowsError,
    build_customer_rows,
    customer_rows_use_case,
    daily_purchases,
    features_at,
)
from flowline.contract import apply_contract, read_table, read_use_case_table, resolve_source
from flowline.splitting import split_frame
from flowline.use_case import UseCaseError
from flowline.use_case_loader import load_use_case, parse_use_case


def log_use_case(**transactions) -> dict:
    return {
        "name": "shop", "task": "regression", "data": {"path": "unused.csv"},
        "label": {"column": "future_spend"}, "time_column": "day",
        "columns": {"who": {"type": "string"}, "day": {"type": "datetime"}, "paid": {"type": "number", "min": 0}},
        "split": {"method": "latest"},
        "transactions": {"entity_column": "who", "amount_column": "paid", "calibration_end": "2024-03-31",
                         "horizon_days": 60, "training_cutoffs": ["2024-02-29"], **transactions},
    }


def log(*events: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame({"who": [e[0] for e in events], "day": pd.to_datetime([e[1] for e in events]),
                         "paid": [e[2] for e in events]})


EVENTS = log(
    ("a", "2024-01-01", 10.0), ("a", "2024-01-01", 5.0),   # same day: one purchase of 15
    ("a", "2024-02-15", 20.0),
    ("a", "2024-03-10", 30.0),                             # after the training cut-off, in calibration
    ("a", "2024-04-20", 100.0),                            # after calibration_end: the holdout
    ("b", "2024-03-20", 8.0),                              # first buys after the training cut-off
    ("z", "2024-05-30", 1.0),                              # new in the holdout's last days: the log reaches its end
)


def test_features_and_labels_by_hand():
    use_case = parse_use_case(log_use_case())
    rows = build_customer_rows(EVENTS, use_case).set_index(["who", CUTOFF_COLUMN])
    a_train = rows.loc[("a", "2024-02-29")]
    assert a_train["first_amount"] == 15 and a_train["max_amount"] == 20
    assert a_train["mean_repeat_amount"] == 20                       # one repeat purchase
    assert a_train["mean_weeks_between"] == pytest.approx(45 / 7)    # Jan 1 -> Feb 15
    assert a_train["lapsed_fraction"] == pytest.approx((14 / 7) / (59 / 7 + 1))
    assert a_train["purchases_last_4w"] == 1 and a_train["amount_last_13w"] == 35
    # Label: the 30 spent between the cut-off and calibration_end (31 days), scaled to 60 days.
    assert a_train["future_spend"] == pytest.approx(30 * 60 / 31)
    # At calibration_end: the label is the holdout's spend, over the 60 days after it.
    assert rows.loc[("a", "2024-03-31"), "future_spend"] == 100
    assert rows.loc[("b", "2024-03-31"), "future_spend"] == 0
    # b had not bought by the training cut-off, so it has no training row.
    assert ("b", "2024-02-29") not in rows.index
    assert set(FEATURE_COLUMNS) <= set(rows.columns)


def test_features_at_a_date_are_the_training_rows_features_and_nothing_after():
    use_case = parse_use_case(log_use_case())
    purchases = daily_purchases(EVENTS, use_case)
    at = features_at(purchases, date(2024, 2, 29))
    rows = build_customer_rows(EVENTS, use_case)
    training = rows[rows[CUTOFF_COLUMN] == "2024-02-29"].set_index("who")
    assert list(at.columns) == list(FEATURE_COLUMNS) and list(at.index) == ["a"]  # b bought later; no label
    pd.testing.assert_frame_equal(at, training[list(FEATURE_COLUMNS)], check_names=False)
    assert features_at(purchases, date(2023, 12, 31)).empty
    later = daily_purchases(pd.concat([EVENTS, log(("a", "2024-03-01", 999.0))]), use_case)
    pd.testing.assert_frame_equal(features_at(later, date(2024, 2, 29)), at)


def test_the_same_transactions_in_any_order_give_bit_identical_days():
    use_case = parse_use_case(log_use_case())
    amounts = [0.1, 0.2, 0.3, 1e16, -1e16, 0.7]  # floating-point sums depend on their order
    events = log(*[("a", "2024-01-05", amount) for amount in amounts], ("b", "2024-01-06", 1.0))
    expected = daily_purchases(events, use_case)
    for seed in range(5):
        shuffled = events.sample(frac=1.0, random_state=seed)
        pd.testing.assert_frame_equal(daily_purchases(shuffled, use_case), expected, check_exact=True)
    in_canonical_order = pd.DataFrame({"e": "a", "x": sorted(amounts)}).groupby("e")["x"].sum().item()
    assert expected.loc[expected["entity"] == "a", "amount"].item() == in_canonical_order


def test_training_rows_never_see_the_holdout():
    use_case = parse_use_case(log_use_case())
    later = pd.concat([EVENTS, log(("a", "2024-05-01", 999.0), ("c", "2024-04-02", 50.0))])
    before = build_customer_rows(EVENTS, use_case)
    after = build_customer_rows(later, use_case)
    training = lambda rows: rows[rows[CUTOFF_COLUMN] == "2024-02-29"].reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(training(before), training(after))
    scoring = after[after[CUTOFF_COLUMN] == "2024-03-31"].set_index("who")
    assert scoring.loc["a", "future_spend"] == 1099 and "c" not in scoring.index  # c is new after calibration


def test_a_log_that_stops_at_calibration_end_is_refused():
    use_case = parse_use_case(log_use_case())
    with pytest.raises(CustomerRowsError, match="no transaction after calibration_end"):
        build_customer_rows(EVENTS[EVENTS["day"] <= "2024-03-31"], use_case)


@pytest.mark.parametrize("cut", ["2024-05-20", "2099-01-01"])
def test_a_log_that_stops_inside_the_holdout_window_is_refused_not_labelled_as_if_whole(cut):
    """CDNOW cut 31 days into its 273-day window gave test labels of 11 % of the spend and a passing gate; a stray
    row dated 2050 after the calibration period alone passed for a holdout."""
    use_case = parse_use_case(log_use_case())  # a 60-day window, 2024-04-01 to 2024-05-30: 7 days may lack sales
    short = EVENTS[EVENTS["day"] <= "2024-05-20"]
    if cut != "2024-05-20":
        short = pd.concat([EVENTS[EVENTS["day"] <= "2024-03-31"], log(("a", cut, 5.0))])
    last = "is on 2024-04-20" if cut == "2024-05-20" else r"is none \(the next after it is on 2099-01-01\)"
    with pytest.raises(CustomerRowsError, match=f"in the 60-day window after calibration_end 2024-03-31 {last}, "
                                                f"more than 7 days before the window ends on 2024-05-30"):
        build_customer_rows(short, use_case)
    assert len(build_customer_rows(EVENTS[EVENTS["day"] <= "2024-05-24"].pipe(
        lambda kept: pd.concat([kept, log(("y", "2024-05-23", 1.0))])), use_case))  # 7 days short: whole enough


@pytest.mark.parametrize("change, message", [
    ({"transactions": {"training_cutoffs": ["2024-04-01"]}}, "is not before calibration_end"),
    ({"split": {"method": "stratified"}}, "split.method must be 'latest'"),
    ({"task": "binary"}, "needs a regression task"),
    ({"transactions": {"amount_column": "who"}}, "is not numeric"),
    ({"transactions": {"entity_column": "nobody"}}, "'nobody' is not declared"),
    ({"columns": {"who": {"type": "string"}, "day": {"type": "integer"}, "paid": {"type": "number"}}},
     "must be a datetime column"),
])
def test_the_schema_refuses_inconsistent_transaction_use_cases(change, message):
    document = log_use_case(**change.pop("transactions", {}))
    document.update(change)
    if document["task"] == "binary":
        document.update(costs={"false_negative": 1, "false_positive": 1})
        document["label"].update(positive="1", values=["0", "1"])
    with pytest.raises(UseCaseError, match=message):
        parse_use_case(document)


def test_the_customer_rows_use_case_is_what_later_steps_see():
    rows_use_case = customer_rows_use_case(parse_use_case(log_use_case()))
    assert rows_use_case.transactions is None and rows_use_case.split.method == "latest"
    assert rows_use_case.feature_columns == list(FEATURE_COLUMNS)
    assert rows_use_case.id_columns == ["who"] and rows_use_case.time_column == CUTOFF_COLUMN


@pytest.fixture(scope="module")
def cdnow(data_home):
    use_case = load_use_case("clv")
    kept = apply_contract(read_table(resolve_source(use_case), separator=use_case.data.separator).frame,
                          use_case).kept
    return use_case, kept


def test_cdnow_gives_every_customer_at_each_cut_off_and_the_split_keeps_them_apart(cdnow):
    use_case, kept = cdnow
    rows = build_customer_rows(kept, use_case)
    customers = kept["customer_id"].nunique()
    assert customers == 23570 and rows.groupby(CUTOFF_COLUMN).size().tolist() == [customers, customers]
    holdout = kept[(kept["date"] > "1997-09-30") & (kept["date"] <= "1998-06-30")]["dollar_value"].sum()
    parts = split_frame(rows, customer_rows_use_case(use_case))
    assert parts["test"]["future_spend"].sum() == pytest.approx(holdout)
    assert (parts["test"][CUTOFF_COLUMN] == "1997-09-30").all() and len(parts["test"]) == customers
    assert not set(parts["train"]["customer_id"]) & set(parts["valid"]["customer_id"])
    assert len(parts["valid"]) == pytest.approx(0.2 * customers, abs=1)
    assert np.isfinite(parts["train"][list(FEATURE_COLUMNS)].to_numpy()).all()


def test_the_feature_search_tries_no_calendar_of_the_one_training_cut_off():
    from flowline.features.engineering import engineer_features

    rng = np.random.default_rng(0)
    days = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 150, 3000), unit="D")
    events = pd.DataFrame({"who": [f"c{i}" for i in rng.integers(0, 300, 3000)], "day": days,
                           "paid": rng.gamma(2.0, 10.0, 3000)})
    use_case = parse_use_case(log_use_case())
    rows_use_case = customer_rows_use_case(use_case)
    rows_use_case = rows_use_case.model_copy(update={"features": rows_use_case.features.model_copy(
        update={"search_min_rows": 0})})  # 300 customers: searched all the same
    parts = split_frame(build_customer_rows(events, use_case), rows_use_case)
    _, log = engineer_features(parts["train"], parts["valid"], rows_use_case, progress=lambda _: None)
    assert log.tried and not any("calendar" in entry["candidate"] for entry in log.tried)


def returns_use_case() -> dict:
    """A retailer's ledger: `paid` may be negative (a return), and the label is learned with a Tweedie loss."""
    document = log_use_case()
    document["columns"]["paid"] = {"type": "number"}
    return {**document, "tuning": {"objective": "tweedie"}}


RETURNS = log(
    ("a", "2024-01-01", 50.0), ("a", "2024-01-01", -20.0),  # a same-day return: one purchase of 30
    ("a", "2024-03-10", -30.0),                             # returned after the cut-off: net -30 in the label window
    ("a", "2024-04-20", -5.0),                              # and again in the holdout
    ("b", "2024-02-01", 40.0), ("b", "2024-03-05", 25.0), ("b", "2024-03-20", -10.0),  # net +15 after the cut-off
    ("b", "2024-04-25", 12.0),
    ("z", "2024-05-30", 1.0),                               # the log reaches the holdout's end
)


def test_returns_are_netted_and_the_label_is_net_spend_floored_at_zero():
    rows = build_customer_rows(RETURNS, parse_use_case(returns_use_case())).set_index(["who", CUTOFF_COLUMN])
    assert rows.loc[("a", "2024-02-29"), "first_amount"] == 30
    assert rows.loc[("a", "2024-02-29"), "future_spend"] == 0          # -30, floored
    assert rows.loc[("b", "2024-02-29"), "future_spend"] == pytest.approx(15 * 60 / 31)
    assert rows.loc[("a", "2024-03-31"), "future_spend"] == 0          # -5, floored
    assert rows.loc[("b", "2024-03-31"), "future_spend"] == 12
    assert rows.loc[("a", "2024-03-31"), "amount_last_4w"] == -30      # features keep the net amounts
    assert (rows["future_spend"] >= 0).all()


def test_a_ledger_with_returns_reaches_a_tweedie_model_with_finite_features_and_no_negative_label(write_csv):
    """From the file through ingest, customer rows, split and the fitted FeatureSet, to a Tweedie XGBoost fit."""
    from flowline.features.engineering import engineer_features
    from flowline.models.families import TrainingData, fit_candidate

    rng = np.random.default_rng(1)
    n = 4000
    days = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 150, n), unit="D")
    paid = rng.gamma(2.0, 15.0, n) * np.where(rng.random(n) < 0.15, -1, 1)  # 15 % of lines are returns
    text = "who,day,paid\n" + "".join(f"c{who},{day:%Y-%m-%d},{amount:.2f}\n" for who, day, amount in
                                      zip(rng.integers(0, 400, n), days, paid))
    use_case = parse_use_case({**returns_use_case(), "data": {"path": str(write_csv(text))}})
    raw = read_use_case_table(use_case)
    result = apply_contract(raw.frame, use_case, raw.malformed)
    assert result.quarantined.empty and (result.kept["paid"] < 0).sum() > 500
    rows_use_case = customer_rows_use_case(use_case)
    parts = split_frame(build_customer_rows(result.kept, use_case), rows_use_case)
    feature_set, _ = engineer_features(parts["train"], parts["valid"], rows_use_case, progress=lambda _: None)
    data = TrainingData.from_splits(feature_set, parts["train"], parts["valid"], "regression")
    assert (data.x_train.min(axis=0) < 0).any()  # net amounts can be negative features: that is fine
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_valid).all()
    assert (data.y_train >= 0).all() and (data.y_valid >= 0).all() and (data.y_train == 0).any()
    params = {"eta": 0.1, "max_depth": 3, "min_child_weight": 1.0, "subsample": 0.9, "colsample_bytree": 0.9,
              "lambda": 1.0, "alpha": 0.01}
    fitted = fit_candidate("xgboost", params, data, rows_use_case.tuning)
    assert np.isfinite(fitted.valid_score) and (fitted.model.margin(data.x_valid) >= 0).all()


def test_lines_repeated_exactly_and_of_amount_zero_are_kept_and_counted(tmp_path):
    """They moved a customer's value (122.39 to 151.39; low to mid) with no word of it; CDNOW has both, maybe real."""
    from flowline.components.customers.rows import customer_rows_files

    use_case = parse_use_case(log_use_case())
    doubtful = pd.concat([EVENTS, log(("a", "2024-02-15", 20.0), ("b", "2024-03-25", 0.0))], ignore_index=True)
    doubtful.to_parquet(tmp_path / "log.parquet")
    kept = customer_rows_files(use_case, str(tmp_path / "log.parquet"), str(tmp_path / "rows"), str(tmp_path / "md"))
    assert (kept["repeated_lines"], kept["zero_amount_lines"]) == (1, 1)
    assert "lines that repeat an earlier one exactly, 1 (each counts" in (tmp_path / "md").read_text()
    rows = pd.read_parquet(tmp_path / "rows").set_index(["who", CUTOFF_COLUMN])
    assert rows.loc[("a", "2024-02-29"), "max_amount"] == 40  # kept as they are: 20 twice on one day
