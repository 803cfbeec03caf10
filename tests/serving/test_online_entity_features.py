"""Online entity features through the real model server, over HTTP, with a real Redis and the embedded SQLite.

A fraud-style package (card payments, entity `card`) is built on the seeded split. The server seeds the
store with the package's history (every train and valid event); the test split is then replayed in time order, each row explained (which shows the entity features the server
computed from the store) and then answered over v2 (which appends it to the store). For every test row
the served entity features equal, exactly, what the offline computation over the whole log gives at that
row's time, and the served probability equals the package's model on the offline features.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from payments import payments_use_case, transactions
from serving_helpers import build_package

from flowline.events import REQUEST_EVENT
from flowline.features.feature_set import FeatureSet
from flowline.inference_services.local_server import running_server
from flowline.package.format import Package

pytestmark = pytest.mark.xdist_group("serving")
EVENT_COLUMNS = ["card", "at", "amount"]


@pytest.fixture(scope="module")
def payments_package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("payments")
    transactions().to_csv(folder / "payments.csv", index=False)
    use_case = payments_use_case(data={"path": str(folder / "payments.csv")},
                                 tuning={"families": {"xgboost": 1}, "max_boost_rounds": 100})
    package = build_package(use_case, folder / "build", trials=1)
    assert FeatureSet.load(package / "feature_set.json").entity_features, "engineering kept no entity feature"
    return package


@pytest.fixture(scope="module")
def parts(payments_package) -> dict[str, pd.DataFrame]:
    """The split's typed parts, each in time order."""
    return {name: pd.read_parquet(payments_package.parent / name).sort_values("at", kind="stable")
            for name in ("train", "valid", "test")}


def records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    """Rows as an application sends them: ISO times, numbers as numbers."""
    return [{c: (row[c].isoformat() if c == "at" else row[c]) for c in columns} for _, row in frame.iterrows()]


def v2_body(record: dict) -> dict:
    types = {"card": "BYTES", "at": "BYTES", "amount": "FP64", "txn": "BYTES"}
    return {"inputs": [{"name": c, "shape": [1], "datatype": types[c], "data": [v]} for c, v in record.items()]}


@pytest.fixture(params=["redis", "sqlite"])
def served(request, payments_package, tmp_path) -> tuple[str, str]:
    """A server over the package: on the session's Redis, or on the default embedded SQLite under --runs-dir."""
    if request.param == "redis":
        args = ["--online-store", request.getfixturevalue("redis_url")]
    else:
        args = ["--runs-dir", str(tmp_path)]
    with running_server([str(payments_package)], extra_args=args, log_path=str(tmp_path / "server.log")) as url:
        if request.param == "sqlite":
            assert (tmp_path / "online-store.db").is_file()
        yield url, request.param


def test_replayed_test_split_gets_exactly_the_offline_entity_features(served, payments_package, parts) -> None:
    url, _ = served
    fitted = FeatureSet.load(payments_package / "feature_set.json")
    names = [n for f in fitted.entity_features for n in f.names]
    entity = [fitted.feature_names.index(n) for n in names]
    whole = pd.concat(parts.values())
    offline = fitted.with_history(whole).transform(parts["test"])
    with httpx.Client(base_url=url, timeout=30) as client:
        served_features, probabilities = [], []
        for record in records(parts["test"], ["txn", *EVENT_COLUMNS]):
            explained = client.post("/v1/models/payments:explain", json={"instances": [record]})
            assert explained.status_code == 200, explained.text
            served_features.append([explained.json()["explanations"][0]["entity_features"][n] for n in names])
            answer = client.post("/v2/models/payments/infer", json=v2_body(record))
            assert answer.status_code == 200, answer.text
            probabilities.append(answer.json()["outputs"][0]["data"][0])
    served_features = np.asarray(served_features, dtype=np.float32)
    assert np.array_equal(served_features, offline[:, entity])
    assert (served_features > 0).any(axis=0).all()  # every entity feature saw earlier events somewhere
    expected = Package.open(payments_package).model.predict(offline).astype(np.float32)
    assert np.array_equal(np.asarray(probabilities, dtype=np.float32), expected)
    # The package's own transform of the test split, as the evaluate step and batch scoring compute it, gives the
    # served features: its history holds train and valid, and each test row sees the test rows before it.
    assert np.array_equal(fitted.transform(parts["test"])[:, entity], offline[:, entity])


def count_of(client: httpx.Client, record: dict, name: str) -> float:
    explained = client.post("/v1/models/payments:explain", json={"instances": [record]})
    assert explained.status_code == 200, explained.text
    return explained.json()["explanations"][0]["entity_features"][name]


def test_events_endpoint_takes_cloud_events_and_refuses_bad_events_whole(served, payments_package, parts) -> None:
    url, _ = served
    name = next(n for f in FeatureSet.load(payments_package / "feature_set.json").entity_features for n in f.names
                if n.startswith(("count", "recency")))
    later = {"txn": "t-later", "card": "card-new", "at": "2027-01-01T00:00:30", "amount": 12.5}
    event = {"card": "card-new", "at": "2027-01-01T00:00:10", "amount": 3.0}
    headers = {"ce-type": REQUEST_EVENT, "ce-id": "request-1", "ce-source": "http://localhost:9081/",
               "ce-specversion": "1.0", "content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=30) as client:
        before = count_of(client, later, name)
        bad = [
            ({"instances": [event, {**event, "amount": "lots"}]}, {}, "instances[1].amount"),
            ({"instances": [event, {k: v for k, v in event.items() if k != "at"}]}, {}, "missing column 'at'"),
            ({"instances": [{**event, "at": "yesterday"}]}, {}, "instances[0].at"),
            ({"instances": [{**event, "colour": "red"}]}, {}, "unknown column 'colour'"),
            ({"rows": [event]}, {}, "data: expected a v1 body"),
            ({"instances": [event]}, {**headers, "ce-type": "dev.example.other"}, "ce-type"),
            (v2_body({**event, "amount": None}), headers, "amount"),
            # the entity is a key of the store: capped as an id (100,000-character cards grew it by 118 MB)
            ({"instances": [{**event, "card": "c" * 201}]}, {}, "instances[0].card: an id of 201 characters"),
            (v2_body({**event, "card": "c" * 201}), headers, "card: an id of 201 characters"),
        ]
        for body, sent, field in bad:
            answer = client.post("/v2/models/payments/events", json=body, headers=sent)
            assert answer.status_code == 400 and field in answer.json()["error"], (field, answer.text)
        plain = client.post("/v2/models/payments/events", content=json.dumps({"instances": [event]}),
                            headers={"content-type": "text/plain"})  # what a web page may send cross-site
        assert plain.status_code == 415 and "events are JSON (application/json), got 'text/plain'" in plain.text
        malformed = client.post("/v2/models/payments/events", content=b"{not json", headers=headers)
        assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
        assert count_of(client, later, name) == before  # nothing of a refused batch was written
        answer = client.post("/v2/models/payments/events", json=v2_body({"txn": "t1", **event}), headers=headers)
        assert answer.status_code == 200 and answer.json()["events"] == 1, answer.text
        after = count_of(client, later, name)
        assert after != before
        # The broker delivers the same event (ce-source, ce-id) again: it is not counted twice.
        again = client.post("/v2/models/payments/events", json=v2_body({"txn": "t1", **event}), headers=headers)
        assert again.status_code == 200 and again.json()["events"] == 0 and again.json()["repeated"], again.text
        assert count_of(client, later, name) == after
        # A client names its push to retry it safely; another key, or none, is another push.
        named = {**event, "at": "2027-01-01T00:00:20"}
        for key, written in (("push-7", 1), ("push-7", 0), ("push-8", 1)):
            answer = client.post("/v2/models/payments/events", json={"instances": [named]},
                                 headers={"Idempotency-Key": key})
            assert answer.status_code == 200 and answer.json()["events"] == written, answer.text
        empty = client.post("/v2/models/payments/events", json={"instances": [named]},
                            headers={"Idempotency-Key": ""})
        assert empty.status_code == 400 and "idempotency-key: empty" in empty.json()["error"]
        metrics_text = client.get("/metrics").text
        assert 'flowline_entity_events_total{model_name="payments",source="repeated"} 2.0' in metrics_text
        missing = client.post("/v2/models/nobody/events", json={"instances": [event]})
        assert missing.status_code == 404


def test_rows_beyond_the_training_range_are_counted_on_metrics(served, parts) -> None:
    url, _ = served
    top = float(parts["train"]["amount"].max())
    record = {"card": "card-metrics", "at": "2027-02-01T00:00:00", "amount": top * 3}
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(2):
            assert client.post("/v2/models/payments/infer", json=v2_body(record)).status_code == 200
        assert client.post("/v2/models/payments/infer", json=v2_body({**record, "amount": top})).status_code == 200
        text = client.get("/metrics").text
    line = ('flowline_out_of_profile_rows_total{column="amount",model_name="payments",'
            'reason="above_training_max"} 2.0')
    assert line in text
    assert 'flowline_entity_events_total{model_name="payments",source="served"} 3.0' in text


def test_a_package_without_entity_features_opens_no_store(churn_package, record, tmp_path) -> None:
    with running_server([str(churn_package)], extra_args=["--runs-dir", str(tmp_path)]) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v1/models/churn:predict", json={"instances": [record]}).status_code == 200
        answer = client.post("/v2/models/churn/events", json={"instances": [record]})
        assert answer.status_code == 400 and "has no entity features" in answer.json()["error"]
    assert not (tmp_path / "online-store.db").exists()


def test_batch_scoring_sees_the_inputs_earlier_rows_as_the_server_does(payments_package, parts, tmp_path) -> None:
    """Scored in chunks of 7, every test row gets the probability the server answers after the rows before it:
    the features over the whole log, not the history frozen at training."""
    from flowline.batch import score_table
    from flowline.scoring import Scorer

    fitted = FeatureSet.load(payments_package / "feature_set.json")
    offline = fitted.with_history(pd.concat(parts.values())).transform(parts["test"])
    expected = Package.open(payments_package).model.predict(offline).astype(np.float32)
    parts["test"].to_parquet(tmp_path / "test.parquet")
    summary = score_table(Scorer.open(payments_package), str(tmp_path / "test.parquet"), str(tmp_path / "scores.parquet"),
                          str(tmp_path / "quarantine.parquet"), chunk_rows=7)
    assert summary.counts["rows_scored"] == len(parts["test"])
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert scores["_source_row"].tolist() == list(range(len(parts["test"])))  # each score names its input row
    assert np.array_equal(scores["probability"].to_numpy(), expected)


def test_batch_scores_do_not_depend_on_the_chunk_size_or_the_row_order(payments_package, parts, tmp_path) -> None:
    """The test split shuffled: a row's entity features count its card's rows earlier in time wherever they are in
    the file, so chunks of 7 and one chunk give every row the same probability, the one over the whole log."""
    from flowline.batch import score_table
    from flowline.scoring import Scorer

    fitted = FeatureSet.load(payments_package / "feature_set.json")
    shuffled = parts["test"].sample(frac=1.0, random_state=5).reset_index(drop=True)
    offline = fitted.with_history(pd.concat([parts["train"], parts["valid"], shuffled])).transform(shuffled)
    expected = Package.open(payments_package).model.predict(offline).astype(np.float32)
    shuffled.to_parquet(tmp_path / "shuffled.parquet")
    scorer = Scorer.open(payments_package)
    for chunk_rows in (7, 100_000):
        out = tmp_path / f"scores-{chunk_rows}.parquet"
        score_table(scorer, str(tmp_path / "shuffled.parquet"), str(out), str(tmp_path / "quarantine.parquet"),
                    chunk_rows=chunk_rows)
        scores = pd.read_parquet(out).sort_values("_source_row")
        assert np.array_equal(scores["probability"].to_numpy(), expected), chunk_rows


def test_a_backtest_over_the_training_period_counts_each_event_once(payments_package, parts, tmp_path) -> None:
    """The training rows scored again: each is an event of the package's history already, so its card's counts
    are the fitted ones; the batch store added every row a second time and doubled them."""
    from flowline.batch import score_table
    from flowline.scoring import Scorer

    fitted = FeatureSet.load(payments_package / "feature_set.json")
    expected = Package.open(payments_package).model.predict(fitted.transform(parts["train"])).astype(np.float32)
    parts["train"].to_parquet(tmp_path / "train.parquet")
    score_table(Scorer.open(payments_package), str(tmp_path / "train.parquet"), str(tmp_path / "scores.parquet"),
                str(tmp_path / "quarantine.parquet"), chunk_rows=50)
    scores = pd.read_parquet(tmp_path / "scores.parquet").sort_values("_source_row")
    assert np.array_equal(scores["probability"].to_numpy(), expected)


def test_a_row_the_server_refuses_is_no_event_for_the_rows_after_it(payments_package, parts, tmp_path) -> None:
    """An amount of 1e39 passes the contract but not the server's float32 check, so the server never stores it;
    batch scoring counted it as an event, and quarantined the card's next row, which the server answered (the
    train/serve audit). Now that row is scored as if the refused one were not there."""
    from flowline.batch import score_table
    from flowline.scoring import Scorer

    last = parts["test"].iloc[[-1]]
    at = last["at"].iloc[0] + pd.Timedelta(days=1)
    refused = last.assign(txn="t-huge", card="zz-big", at=at, amount=1e39)
    after = last.assign(txn="t-after", card="zz-big", at=at + pd.Timedelta(minutes=1), amount=1.0)
    scorer = Scorer.open(payments_package)
    for name, rows in (("alone", after), ("both", pd.concat([refused, after]))):
        rows.reset_index(drop=True).to_parquet(tmp_path / f"{name}.parquet")
        score_table(scorer, str(tmp_path / f"{name}.parquet"), str(tmp_path / f"{name}-scores.parquet"),
                    str(tmp_path / f"{name}-quarantine.parquet"))
    alone, both = (pd.read_parquet(tmp_path / f"{name}-scores.parquet") for name in ("alone", "both"))
    assert both["_source_row"].tolist() == [1] and both["probability"].tolist() == alone["probability"].tolist()
    reasons = pd.read_parquet(tmp_path / "both-quarantine.parquet")["_quarantine_reason"].tolist()
    assert reasons == ["amount: a number beyond float32's range, which the model computes in"]  # named
