"""A transaction log's history in the online store gives each customer exactly the features the log gives it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import yaml

from flowline.customer_history import history_features, history_log, seed_history, transaction_events
from flowline.customer_rows import FEATURE_COLUMNS, customer_rows_use_case, daily_purchases, features_at
from flowline.online_store import open_store
from flowline.pipelines.cli import main
from flowline.use_case import UseCaseError
from flowline.use_case_loader import parse_use_case

LOG_USE_CASE = {
    "name": "shop", "task": "regression", "data": {"path": "unused.csv"},
    "label": {"column": "future_spend"}, "time_column": "at",
    "columns": {"who": {"type": "string"}, "at": {"type": "datetime"}, "paid": {"type": "number"}},
    "split": {"method": "latest"},
    "transactions": {"entity_column": "who", "amount_column": "paid", "calibration_end": "2024-03-31",
                     "horizon_days": 60, "training_cutoffs": ["2024-02-29"]},
}


def shuffled_log(seed: int = 0) -> pd.DataFrame:
    """Three customers, several transactions on some days (sums whose order matters in float), a return,
    sub-second times, and one customer who only buys late; in no particular order."""
    rng = np.random.default_rng(seed)
    times = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90 * 86400 * 10**6, 300), unit="us")
    frame = pd.DataFrame({"who": rng.choice(["a", "b", "c"], 300), "at": times,
                          "paid": np.round(rng.gamma(2.0, 10.0, 300), 2) * rng.choice([1, 1, 1, -1], 300)})
    frame.loc[frame["who"] == "c", "at"] = pd.Timestamp("2024-03-20 23:59:59.999999")
    frame.loc[len(frame)] = ["a", pd.Timestamp("2024-01-05 10:00"), 0.1]
    frame.loc[len(frame)] = ["a", pd.Timestamp("2024-01-05 10:00"), 0.2]  # a tie in time: ordered by amount
    return frame.sample(frac=1.0, random_state=seed, ignore_index=True)


@pytest.mark.parametrize("as_of", [date(2024, 1, 5), date(2024, 2, 29), date(2024, 3, 20), date(2024, 3, 31)])
def test_stored_transactions_give_exactly_the_logs_features(as_of: date) -> None:
    use_case = parse_use_case(LOG_USE_CASE)
    log = shuffled_log()
    store = open_store("memory://")
    assert seed_history(store, log, use_case, source="log-1") == len(log)
    online = history_features(store, use_case, ["c", "a", "b", "nobody"], as_of)
    offline = features_at(daily_purchases(log, use_case), as_of)
    pd.testing.assert_frame_equal(online, offline, check_exact=True)
    assert list(online.columns) == list(FEATURE_COLUMNS) and "nobody" not in online.index
    assert ("c" in online.index) == (as_of >= date(2024, 3, 20))  # bought on its last microsecond of the day


def test_the_same_transactions_pushed_in_another_order_give_the_same_features() -> None:
    use_case = parse_use_case(LOG_USE_CASE)
    log = shuffled_log()
    store = open_store("memory://")
    batches = [part for _, part in log.iloc[::-1].groupby(np.arange(len(log)) % 7)]  # seven batches, reversed
    seed_history(store, batches[0], use_case, source="first-batch")  # a store is read once it holds a seeded log
    for part in batches[1:]:
        for entity, events in transaction_events(part, use_case).items():
            store.append(use_case.entity_definition, entity, events)
    as_of = date(2024, 3, 31)
    pd.testing.assert_frame_equal(history_features(store, use_case, ["a", "b", "c"], as_of),
                                  features_at(daily_purchases(log, use_case), as_of), check_exact=True)


def test_events_carry_utc_seconds_and_the_amount_and_come_back_as_the_log() -> None:
    use_case = parse_use_case(LOG_USE_CASE)
    log = pd.DataFrame({"who": ["a", "a"], "at": [pd.Timestamp("1970-01-02"), pd.Timestamp("2024-01-05 10:00:00.000001")],
                        "paid": [1.5, -2.0]})
    events = transaction_events(log, use_case)
    assert events == {"a": [(86400.0, {"paid": 1.5}), (1704448800.000001, {"paid": -2.0})]}
    back = history_log(events, use_case)
    pd.testing.assert_frame_equal(back, log.astype({"who": object}), check_exact=True)


def test_seeding_a_log_twice_writes_it_once() -> None:
    use_case = parse_use_case(LOG_USE_CASE)
    store = open_store("memory://")
    log = shuffled_log()
    assert seed_history(store, log, use_case, source="sha-1") == len(log)
    assert seed_history(store, log, use_case, source="sha-1") == 0
    assert sum(map(len, store.events_many("shop", ["a", "b", "c"]).values())) == len(log)


def test_customer_rows_keep_the_logs_use_case_and_only_a_log_may_be_kept() -> None:
    use_case = parse_use_case(LOG_USE_CASE)
    rows = customer_rows_use_case(use_case)
    assert rows.transaction_log == use_case and rows.transactions is None
    plain = {**LOG_USE_CASE, "name": "plain", "transactions": None, "split": {"method": "time"}}
    document = {**rows.model_dump(mode="json"), "transaction_log": plain}
    with pytest.raises(UseCaseError, match="transaction_log: needs a transactions section"):
        parse_use_case(document)
    with pytest.raises(ValueError, match="'plain' has no 'transactions' section"):
        transaction_events(pd.DataFrame(), parse_use_case(plain))


def test_flowline_seed_writes_a_logs_transactions_once_and_refuses_what_is_not_a_log(tmp_path, capsys) -> None:
    log = shuffled_log()
    log.to_csv(tmp_path / "shop.csv", index=False)
    with open(tmp_path / "bad.csv", "w") as out:  # one row the contract quarantines
        out.write((tmp_path / "shop.csv").read_text() + "a,not a time,1.0\n")
    use_case_file = tmp_path / "shop.yaml"
    use_case_file.write_text(yaml.safe_dump({**LOG_USE_CASE, "data": {"path": str(tmp_path / "bad.csv")}}))
    store, runs = f"sqlite://{tmp_path}/online.db", str(tmp_path / "runs")
    seed = ["seed", "--use-case", str(use_case_file), "--online-store", store, "--runs-dir", runs]
    quarantine = tmp_path / "runs" / "seed-shop.quarantine.parquet"
    assert main(seed) == 0
    assert capsys.readouterr().out == (f"seeded {len(log)} new transactions of shop into {store} (namespace shop); "
                                       f"1 rows quarantined ({quarantine})\n")
    refused = pd.read_parquet(quarantine)  # the line and its reason, kept as ingest keeps them
    assert refused["at"].tolist() == ["not a time"] and "at" in refused["_quarantine_reason"].iloc[0]
    assert main(seed) == 0
    assert "already holds every transaction of this log of shop: nothing written" in capsys.readouterr().out
    use_case = parse_use_case(LOG_USE_CASE)
    expected = features_at(daily_purchases(log, use_case), date(2024, 3, 31))
    pd.testing.assert_frame_equal(history_features(open_store(store), use_case, ["a", "b", "c"], date(2024, 3, 31)),
                                  expected, check_exact=True)
    # The log with its bad line corrected (another content): only that transaction is new. Seeding it whole
    # again would have counted every other transaction twice.
    fixed = pd.concat([log, pd.DataFrame({"who": ["a"], "at": [pd.Timestamp("2024-02-01 12:00")], "paid": [1.0]})],
                      ignore_index=True)
    fixed.to_csv(tmp_path / "fixed.csv", index=False)
    assert main([*seed, "--source", str(tmp_path / "fixed.csv")]) == 0
    assert capsys.readouterr().out.startswith("seeded 1 new transactions of shop")
    pd.testing.assert_frame_equal(history_features(open_store(store), use_case, ["a", "b", "c"], date(2024, 3, 31)),
                                  features_at(daily_purchases(fixed, use_case), date(2024, 3, 31)), check_exact=True)
    # A log mostly broken is refused whole, above the use case's max_bad_fraction.
    (tmp_path / "broken.csv").write_text("who,at,paid\n" + "a,never,1.0\n" * 9 + "a,2024-01-02,1.0\n")
    assert main([*seed, "--source", str(tmp_path / "broken.csv")]) == 1
    assert "9 of 10 rows (90.0%) break the data contract of use case 'shop'" in capsys.readouterr().err
    assert main(["seed", "--use-case", str(use_case_file), "--online-store", "mysql://db"]) == 1
    assert "flowline: seed: online store 'mysql://db': expected sqlite:///path.db" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["seed", "churn", "--online-store", store])
    assert caught.value.code == 2 and "use case 'churn' has no 'transactions' section" in capsys.readouterr().err
