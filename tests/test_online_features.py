"""Entity features read from an online store equal the offline computation over the whole log, row for row.

A FeatureSet is fitted on the earliest 70% of a card-payment log; the store is seeded from its fitted
history; the later rows are then replayed in time order through `FeatureSet.online(store)`, each batch
appended to the store once transformed, as the model server does. Every replayed row's features must equal,
exactly, what `with_history(whole log).transform` gives: point in time by construction, since a row at time
t sees only events strictly before t. Run on all three store backends.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from payments import payments_use_case, transactions

from flowline.contract import apply_contract
from flowline.features.feature_set import FeatureSet
from flowline.features.kinds import FeatureError
from flowline.features.plan import default_plan
from flowline.online_store import IncompatibleEvents, open_store

OUTPUTS = [["recency"], ["count", 3600.0], ["sum", 3600.0, "amount"], ["sum", 86400.0, "amount"]]


@pytest.fixture(scope="module")
def log() -> tuple:
    use_case = payments_use_case()
    raw = transactions(seed=3, cards=120).astype(str)
    frame = apply_contract(raw, use_case).kept
    order = np.argsort(frame["at"].to_numpy(), kind="stable")
    frame, raw = frame.iloc[order].reset_index(drop=True), raw.iloc[order].reset_index(drop=True)
    cut = int(len(frame) * 0.7)
    plan = default_plan(frame, use_case).with_generated({"kind": "entity", "outputs": OUTPUTS})
    fitted = FeatureSet.fit(frame.iloc[:cut], use_case, plan)
    return use_case, fitted, frame, raw, cut


@pytest.fixture(params=["sqlite", "memory", "redis"])
def store(request, tmp_path):
    url = {"sqlite": f"sqlite://{tmp_path}/online.db", "memory": "memory://"}.get(request.param)
    store = open_store(url or request.getfixturevalue("redis_url"))
    yield store
    store.close()


@pytest.mark.parametrize("batch", [1, 7])
def test_replayed_rows_see_exactly_the_offline_features(log, store, batch: int) -> None:
    use_case, fitted, frame, raw, cut = log
    offline = fitted.with_history(frame).transform(frame)[cut:]
    assert fitted.seed(store) == {"payments": True}
    online = fitted.online(store)
    assert online.version == fitted.version  # the same fitted set: only where the events come from differs
    records = raw.to_dict("records")[cut:]  # as a request carries them: ISO times, amounts as text
    rows = []
    for start in range(0, len(records), batch):
        values = online.record_values(records[start:start + batch])
        rows.append(online.transform_values(values, len(records[start:start + batch])))
        for definition, events in online.entity_events(values).items():
            store.append_many(definition, events)
    served = np.concatenate(rows)
    entity = [i for i, name in enumerate(fitted.feature_names) if "card" in name]
    assert len(entity) == len(OUTPUTS) and np.array_equal(served, offline)
    assert (served[:, entity[1]] > 0).any() and (served[:, entity[3]] > 0).any()  # the windows held events
    # Offline, the fitted set's own transform of those rows sees them as events too (the evaluate step, batch
    # scoring): the same features, though its history stops at training.
    assert np.array_equal(fitted.transform(frame)[cut:], offline)


def test_a_later_row_at_the_instant_of_a_training_row_of_its_entity_is_an_event_of_its_own(log, store) -> None:
    """The fitted history knew a row by its time alone, so a later payment of a card at the instant of one of its
    training payments was taken for that payment: evaluation and batch scoring left it out of the card's windows,
    the server counted it (the train/serve audit: 46 of 528 test rows). A training row transformed again is still
    that row, counted once."""
    _, fitted, frame, _, cut = log
    trained = frame.iloc[cut - 1]
    later = pd.DataFrame([{**trained.to_dict(), "txn": "t-same-instant", "amount": trained["amount"] + 7.5},
                          {**trained.to_dict(), "txn": "t-a-minute-on", "at": trained["at"] + pd.Timedelta(minutes=1)}])
    whole = pd.concat([frame.iloc[:cut], later], ignore_index=True)
    assert np.array_equal(fitted.transform(later), fitted.with_history(whole).transform(later))
    count = fitted.feature_names.index(next(name for name in fitted.feature_names if "count" in name))
    again = fitted.transform(pd.concat([frame.iloc[[cut - 1]], later], ignore_index=True))[:, count]
    assert again[2] == again[0] + 2  # a minute on: the training payment and the one at its instant, once each
    assert fitted.seed(store) == {"payments": True}
    assert np.array_equal(fitted.online(store).transform(later), fitted.transform(later))


def test_seeding_again_writes_nothing_even_for_another_version(log, store) -> None:
    _, fitted, frame, _, cut = log
    card = frame["card"].iloc[0]
    assert fitted.seed(store) == {"payments": True}
    assert fitted.seed(store) == {"payments": False}
    retrained = fitted.with_history(frame)  # another version, whose history overlaps what the store holds
    assert retrained.version != fitted.version and retrained.seed(store) == {"payments": False}
    training = frame.iloc[:cut]
    assert len(store.events("payments", card)) == int((training["card"] == card).sum())


def test_the_definition_name_is_the_use_case_s_and_survives_saving(log, tmp_path) -> None:
    use_case, fitted, _, _, _ = log
    (feature,) = fitted.entity_features
    assert feature.name == use_case.entity_definition == "payments"
    fitted.save(tmp_path / "fs.json")
    loaded = FeatureSet.load(tmp_path / "fs.json")
    assert loaded.entity_features[0].name == "payments" and loaded.version == fitted.version


def test_rows_outside_the_training_profile_are_counted_by_column_and_reason(log) -> None:
    use_case, fitted, frame, raw, cut = log
    low, high = frame["amount"].iloc[:cut].min(), frame["amount"].iloc[:cut].max()
    records = [{**raw.iloc[0].to_dict(), "amount": amount} for amount in (low, high, high + 1, high * 2, None)]
    assert fitted.out_of_profile(fitted.record_values(records)) == {("amount", "above_training_max"): 2}
    plan = default_plan(frame, use_case).with_encoding("card", "one_hot")
    coded = FeatureSet.fit(frame.iloc[:cut], payments_use_case(features={}), plan)
    values = coded.record_values([{**raw.iloc[0].to_dict(), "card": "c-new"}, raw.iloc[0].to_dict()])
    assert coded.out_of_profile(values) == {("card", "unseen_category"): 1}
    assert pd.Series(frame["card"]).iloc[0] in coded.categorical[0].known


def test_a_feature_set_saved_before_v3_still_reads_and_transforms_exactly_as_it_did(log) -> None:
    """A v2 document (running sums in the history, no definition name, no training ranges), as packages
    trained before the online store hold it, gives the same features as the set it was saved from."""
    _, fitted, frame, _, _ = log
    document = fitted.to_dict()
    for numeric in document["inputs"]["numeric"]:
        del numeric["low"], numeric["high"]
    (entity,) = [f for f in document["features"] if f["kind"] == "entity"]
    del entity["name"]
    for entry in entity["history"]["events"].values():
        entry["amount"] = [0.0, *np.cumsum(entry["amount"]).tolist()]
    document["format"] = "flowline.featureset/v2"
    old = FeatureSet.from_dict(document)
    assert np.array_equal(old.transform(frame), fitted.transform(frame))
    assert old.entity_features[0].name == "card"  # no name recorded: the entity column's
    document["format"] = "flowline.featureset/v1"
    with pytest.raises(FeatureError, match="format 'flowline.featureset/v1'"):
        FeatureSet.from_dict(document)


def test_a_retrained_version_that_sums_an_amount_reads_a_store_seeded_by_one_that_summed_none(log, store) -> None:
    """The store is seeded once per definition, by the first version served. Its events carry every amount column
    the use case declares, not only those that version's windows sum, so a retrained version that adds a sum over
    `amount` reads the stored events of every known card: exactly the offline features, not a KeyError."""
    use_case, _, frame, raw, cut = log
    counts = default_plan(frame, use_case).with_generated({"kind": "entity", "outputs": [["recency"], ["count", 3600.0]]})
    first = FeatureSet.fit(frame.iloc[:cut], use_case, counts)
    assert first.event_columns == ["card", "at", "amount"]  # what the events endpoint takes, as the README says
    assert first.seed(store) == {"payments": True}
    served = first.online(store)
    half = cut + (len(frame) - cut) // 2
    for record in raw.to_dict("records")[cut:half]:  # rows the first version answers, appended as events
        values = served.record_values([record])
        served.transform_values(values, 1)
        for definition, events in served.entity_events(values).items():
            store.append_many(definition, events)
    sums = default_plan(frame, use_case).with_generated({"kind": "entity", "outputs": OUTPUTS})
    retrained = FeatureSet.fit(frame.iloc[:cut], use_case, sums)
    assert retrained.seed(store) == {"payments": False}  # the store keeps what it holds
    retrained.check_store(store)
    online = retrained.online(store)
    records = raw.to_dict("records")[half:]
    got = online.transform_values(online.record_values(records), len(records))
    assert np.array_equal(got, retrained.with_history(frame).transform(frame)[half:])


def test_a_version_that_sums_an_amount_the_stored_events_lack_is_refused_by_name(log, store) -> None:
    """A store seeded by a version whose events kept no amount (a package trained before events carried every
    amount column, here a use case that declared none) cannot give a sum over it: the check at load says so, and
    a read (an entity the check did not look at) raises the same error, never a KeyError."""
    use_case, fitted, frame, raw, cut = log
    counts = default_plan(frame, use_case).with_generated({"kind": "entity", "outputs": [["recency"]]})
    old = FeatureSet.fit(frame.iloc[:cut], payments_use_case(features={"entity_column": "card"}), counts)
    assert old.event_columns == ["card", "at"]
    old.seed(store)
    with pytest.raises(IncompatibleEvents, match="definition 'payments' carry no 'amount', which this version"):
        fitted.check_store(store)
    online = fitted.online(store)
    with pytest.raises(IncompatibleEvents, match="'amount'"):
        online.transform_values(online.record_values(raw.to_dict("records")[cut:cut + 1]), 1)
    old.check_store(store)  # a version that sums nothing reads it as before


def test_a_batch_s_times_are_read_at_once_as_each_record_s_alone(log) -> None:
    """record_values parses a batch's time column in one call (one record at a time took 1 ms each, an events push of
    10,000 records 21 s): every record's time is what it is alone, whatever its neighbours' offsets, and a record
    without the column is named."""
    _, fitted, _, raw, _ = log
    record = raw.to_dict("records")[0]
    times = ["2026-01-17 04:59:00-05:00", "2026-01-17 04:59:00", "2026-01-17T09:59:00Z", " 2026-01-17 ", None]
    records = [{**record, "at": at} for at in times]
    together = fitted.record_values(records)
    for index, alone in enumerate(fitted.record_values([one]) for one in records):
        for column, values in alone.items():
            assert np.array_equal(together[column][index:index + 1], values, equal_nan=values.dtype.kind == "f"), column
    assert together["at"][0] == together["at"][2] != together["at"][1] and np.isnan(together["at"][4])
    with pytest.raises(FeatureError, match="missing column 'at'"):
        fitted.record_values([record, {key: value for key, value in record.items() if key != "at"}])
