"""CLV scored online by customer id alone, over real HTTP, from the customer's transactions in the online store
(the embedded SQLite file and a real redis-server); and no skew: the CDNOW sample log pushed to the events
endpoint in time order gives every customer exactly the offline features and the package's offline prediction,
at every date."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
import readme_examples

from flowline.contract import apply_contract, read_use_case_table
from flowline.customer_history import history_features, seed_history
from flowline.customer_rows import daily_purchases, features_at
from flowline.inference_services.local_server import running_server
from flowline.inference_services.model import LoadedPackage
from flowline.online_store import open_store
from flowline.pipelines.cli import main
from flowline.use_case import UseCase
from flowline.use_case_loader import load_use_case
from serving_helpers import records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

V1, V2, EVENTS = "/v1/models/clv:predict", "/v2/models/clv/infer", "/v2/models/clv/events"
CALIBRATION_END = date(1997, 9, 30)
CHECKPOINTS = (date(1997, 3, 31), date(1997, 7, 1), CALIBRATION_END)  # replayed up to each in turn
BATCH = 500  # customers per request


@pytest.fixture(scope="module")
def sample_log(data_home, tmp_path_factory) -> tuple[UseCase, pd.DataFrame]:
    """The CDNOW sample log (no header: new_id orig_id date number_of_cds dollar_value) read through the clv
    use case's contract, in time order."""
    raw = (data_home / "cdnow_sample.txt").read_text().split()
    path = tmp_path_factory.mktemp("cdnow") / "sample.txt"
    rows = [" ".join((raw[i], *raw[i + 2:i + 5])) for i in range(0, len(raw), 5)]
    path.write_text("customer_id date number_of_cds dollar_value\n" + "\n".join(rows) + "\n")
    use_case = load_use_case("clv")
    kept = apply_contract(read_use_case_table(use_case, str(path)).frame, use_case).kept
    assert len(kept) == 6919 and kept["customer_id"].nunique() == 2357
    return use_case, kept.sort_values("date", kind="mergesort", ignore_index=True)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def backend(request, tmp_path_factory) -> Iterator[Callable[[str, int], str]]:
    """Where stores live: a folder for SQLite files, or the session's redis-server (a database per store)."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("stores")
        yield lambda name, db: f"sqlite://{folder}/{name}.db"
    else:
        server = request.getfixturevalue("redis_server").rsplit("/", 1)[0]
        yield lambda name, db: f"{server}/{db}"


def fresh_store(backend: Callable[[str, int], str], name: str, db: int) -> str:
    """The URL of an empty store."""
    url = backend(name, db)
    if url.startswith("redis"):
        import redis

        with redis.Redis.from_url(url) as client:
            client.flushdb()
    else:
        Path(url.removeprefix("sqlite://")).unlink(missing_ok=True)
    return url


@contextmanager
def clv_server(clv_package: Path, store_url: str, log: Path) -> Iterator[str]:
    """A model server of the clv package reading customers from the store at `store_url`."""
    with running_server([str(clv_package)], extra_args=["--online-store", store_url], log_path=str(log)) as url:
        yield url


@pytest.fixture(scope="module")
def clv_online(clv_package, backend, sample_log, tmp_path_factory) -> Iterator[str]:
    """A clv model server whose store holds the whole sample log; its URL."""
    use_case, log = sample_log
    store_url = fresh_store(backend, "whole-log", 1)
    assert seed_history(open_store(store_url), log, use_case, source="cdnow-sample") == len(log)
    with clv_server(clv_package, store_url, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def push_weeks(url: str, log: pd.DataFrame) -> None:
    """POST the transactions of `log` to the events endpoint in time order, one week per request (a weekly feed),
    each named by its week and first line and sent twice, as a client retries a push it got no answer to: the
    retry adds nothing."""
    for week, part in log.groupby(log["date"].dt.to_period("W"), sort=True):
        records = [{"customer_id": customer, "date": day.strftime("%Y%m%d"), "number_of_cds": int(cds),
                    "dollar_value": float(value)} for customer, day, cds, value in
                   zip(part["customer_id"], part["date"], part["number_of_cds"], part["dollar_value"])]
        key = {"Idempotency-Key": f"cdnow-week-{week}-line-{part.index[0]}"}
        response = httpx.post(f"{url}{EVENTS}", json={"instances": records}, headers=key)
        assert response.status_code == 200 and response.json()["events"] == len(records), response.text
        retried = httpx.post(f"{url}{EVENTS}", json={"instances": records}, headers=key)
        assert retried.status_code == 200 and retried.json()["events"] == 0 and retried.json()["repeated"], \
            retried.text


def served(url: str, customers: list[str], as_of: date | None = None) -> np.ndarray:
    """The v1 predictions for `customers` by id alone, BATCH at a time."""
    parameters = {"parameters": {"as_of": as_of.isoformat()}} if as_of else {}
    values = []
    for start in range(0, len(customers), BATCH):
        ids = customers[start:start + BATCH]
        response = httpx.post(f"{url}{V1}", json={"instances": [{"customer_id": c} for c in ids], **parameters},
                              timeout=60)
        assert response.status_code == 200, response.text
        answers = response.json()["predictions"]
        assert [a["customer_id"] for a in answers] == ids
        values += [a["prediction"] for a in answers]
    return np.array(values, dtype=np.float32)


def test_replayed_transactions_give_every_customer_the_offline_features_and_prediction(backend, clv_package,
                                                                                      sample_log, tmp_path):
    use_case, log = sample_log
    package = LoadedPackage.load(clv_package)
    offline = daily_purchases(log, use_case)  # the whole log, as batch scoring sees it
    store_url = fresh_store(backend, "replayed", 2)
    replayed = pd.Timestamp("1997-02-01")  # the log seeded up to then, as `flowline seed` does; the rest pushed
    seed_history(open_store(store_url), log[log["date"] < replayed], use_case, source="first-month")
    with clv_server(clv_package, store_url, tmp_path / "server.log") as url:
        for as_of in CHECKPOINTS:  # replay up to each in turn, through the events endpoint
            cut = pd.Timestamp(as_of) + pd.Timedelta(days=1)
            push_weeks(url, log[(log["date"] >= replayed) & (log["date"] < cut)])
            replayed = cut
            expected = features_at(offline, as_of)
            customers = expected.index.tolist()
            assert len(customers) > 500
            online = history_features(open_store(store_url), use_case, customers, as_of)
            pd.testing.assert_frame_equal(online, expected, check_exact=True)
            assert np.array_equal(online.to_numpy(), expected.to_numpy())
            assert np.array_equal(served(url, customers, as_of), package.predict(expected))
        # The rest of the log (the holdout) reaches the store: the value as of calibration_end stays the same.
        push_weeks(url, log[log["date"] >= replayed])
        expected = features_at(offline, CALIBRATION_END)
        assert np.array_equal(served(url, expected.index.tolist(), CALIBRATION_END), package.predict(expected))


def test_a_customer_is_scored_by_id_over_v1_and_v2_as_of_today_by_default(clv_online, clv_package, sample_log):
    url, (use_case, log) = clv_online, sample_log
    package = LoadedPackage.load(clv_package)
    customers = log["customer_id"].drop_duplicates().head(7).tolist()
    before = datetime.now(timezone.utc).date()
    answer = served(url, customers)
    after = datetime.now(timezone.utc).date()
    offline = daily_purchases(log, use_case)
    assert any(np.array_equal(answer, package.predict(features_at(offline, day).loc[customers]))
               for day in {before, after})
    customers.append(customers[0])  # a customer twice in one request is answered twice
    as_of = features_at(offline, CALIBRATION_END).loc[customers]
    response = httpx.post(f"{url}{V2}", json={
        "inputs": [{"name": "customer_id", "shape": [len(customers)], "datatype": "BYTES", "data": customers}],
        "parameters": {"as_of": CALIBRATION_END.isoformat()}})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert np.array_equal(np.array(outputs["prediction"], dtype=np.float32), package.predict(as_of))
    assert outputs["customer_id"] == customers and outputs["segment"] == package.segments(package.predict(as_of))
    # An id with blanks around it is the customer, as batch scoring and the store read keys (it was a 400).
    padded = httpx.post(f"{url}{V1}", json={"instances": [{"customer_id": f" {customers[0]} "}],
                                               "parameters": {"as_of": CALIBRATION_END.isoformat()}})
    assert padded.status_code == 200 and padded.json()["predictions"][0]["prediction"] == outputs["prediction"][0]
    # A request carrying the customer rows is answered as before.
    response = httpx.post(f"{url}{V1}", json={"instances": records_of(as_of.reset_index(drop=True))})
    assert response.status_code == 200, response.text
    assert np.array_equal(np.array([a["prediction"] for a in response.json()["predictions"]], dtype=np.float32),
                          package.predict(as_of))


def test_a_customers_value_is_explained_by_id_exactly_as_its_row_is(clv_online, sample_log):
    use_case, log = sample_log
    customers = ["00004", "00021"]
    by_id = httpx.post(f"{clv_online}/v1/models/clv:explain", json={
        "instances": [{"customer_id": c} for c in customers], "parameters": {"as_of": "1997-09-30"}})
    assert by_id.status_code == 200, by_id.text
    rows = features_at(daily_purchases(log, use_case), CALIBRATION_END).loc[customers]
    by_row = httpx.post(f"{clv_online}/v1/models/clv:explain", json={"instances": records_of(rows)})
    assert by_row.status_code == 200, by_row.text
    explained = by_id.json()["explanations"]
    assert [explanation.pop("customer_id") for explanation in explained] == customers
    assert explained == by_row.json()["explanations"]


@pytest.mark.parametrize("body, field", [
    ({"instances": [{"customer_id": "00004"}, {"customer_id": "99999"}]}, "instances[1].customer_id: customer '99999'"),
    ({"instances": [{"customer_id": "00004"}], "parameters": {"as_of": "1996-12-31"}},
     "instances[0].customer_id: customer '00004' has no transaction on or before 1996-12-31"),
    ({"instances": [{"customer_id": 4.5}]}, "instances[0].customer_id: expected a string, got 4.5"),
    ({"instances": [{"customer_id": 4}]}, "instances[0].customer_id: customer 4 has no transaction"),  # not 00004
    ({"instances": [{"customer_id": None}]}, "instances[0].customer_id: null is not allowed"),
    ({"instances": [{"customer_id": "00004"}], "parameters": {"as_of": "30/09/1997"}},
     "parameters.as_of: expected a date YYYY-MM-DD, got '30/09/1997'"),
    ({"instances": [{"customer_id": "00004"}], "parameters": {"as_of": 19970930}}, "parameters.as_of"),
    ({"instances": [{"customer_id": "00004"}], "parameters": {"as_of": "1997-02-30"}},
     "parameters.as_of: expected a date YYYY-MM-DD, got '1997-02-30'"),
    ({"instances": [{"customer_id": "00004"}], "parameters": ["as_of"]}, "parameters: expected an object"),
    # a misspelt id is no by-id request: what is missing is named, and so is the way to ask by id
    ({"instances": [{"customer": "00003"}]}, "instances[0]: missing column 'mean_weeks_between' (or give "
                                             "'customer_id' alone, to be answered from the customer's transactions"),
    ({"inputs": [{"name": "customer_id", "shape": [1], "datatype": "FP64", "data": [4.0]}]},
     "input 'customer_id': datatype FP64, expected BYTES"),
    ({"inputs": [{"name": "customer_id", "shape": [1], "datatype": "BYTES", "data": ["99998"]}],
      "parameters": {"as_of": "1997-09-30"}}, "inputs[0].customer_id: customer '99998' has no transaction"),
])
def test_an_unknown_customer_or_a_bad_id_or_date_is_a_400_naming_it(clv_online, body, field):
    response = httpx.post(f"{clv_online}{V2 if 'inputs' in body else V1}", json=body)
    assert response.status_code == 400 and field in response.json()["error"], response.text


@pytest.mark.parametrize("record, field", [
    ({"customer_id": "88888", "date": "19971301", "dollar_value": 5.0}, "instances[1].date: '19971301' is not a date"),
    ({"customer_id": "88888", "date": "19971201"}, "instances[1]: missing column 'dollar_value'"),
    ({"customer_id": "88888", "date": "19971201", "dollar_value": -5.0}, "instances[1].dollar_value: -5.0 is outside"),
    ({"customer_id": 88888, "date": "19971201", "dollar_value": 5.0}, "instances[1].customer_id: expected a string"),
    ({"customer_id": "88888", "date": "19971201", "dollar_value": 5.0, "coupon": "X"},
     "instances[1]: unknown column 'coupon'"),
])
def test_a_pushed_transaction_the_contract_refuses_is_a_400_naming_it_and_nothing_is_written(clv_online, record,
                                                                                            field):
    good = {"customer_id": "88888", "date": "19970301", "number_of_cds": 1, "dollar_value": 10.0}
    response = httpx.post(f"{clv_online}{EVENTS}", json={"instances": [good, record]})
    assert response.status_code == 400 and field in response.json()["error"], response.text
    response = httpx.post(f"{clv_online}{V1}", json={"instances": [{"customer_id": "88888"}]})
    assert response.status_code == 400 and "customer '88888' has no transaction" in response.text


def test_a_store_without_the_seeded_log_is_a_503_naming_the_seed_command_and_the_server_serves_on(
        backend, clv_package, sample_log, tmp_path):
    """A Redis restarted empty, or a store never seeded: a customer's value would be that of a customer never seen,
    or of the transactions pushed since. Each by-id request is a 503 saying how to seed it; rows are still scored,
    transactions still taken, and once seeded (adding only what the store lacks) every value is the log's."""
    use_case, log = sample_log
    package = LoadedPackage.load(clv_package)
    store_url = fresh_store(backend, "unseeded", 3)
    offline = daily_purchases(log, use_case)
    rows = features_at(offline, CALIBRATION_END)
    customers = rows.index[:5].tolist()
    with clv_server(clv_package, store_url, tmp_path / "server.log") as url:
        push_weeks(url, log[log["date"] >= pd.Timestamp("1997-09-01")])  # only the latest transactions arrive
        response = httpx.post(f"{url}{V1}", json={"instances": [{"customer_id": c} for c in customers],
                                                  "parameters": {"as_of": CALIBRATION_END.isoformat()}})
        assert response.status_code == 503, response.text
        assert "holds no history of definition 'clv'" in response.text and "`flowline seed clv`" in response.text
        assert httpx.get(f"{url}/v2/models/clv/ready").status_code == 200  # requests carrying rows go on
        response = httpx.post(f"{url}{V1}", json={"instances": records_of(rows.loc[customers])})
        assert response.status_code == 200, response.text
        assert seed_history(open_store(store_url), log, use_case, source="cdnow-sample") == \
            (log["date"] < pd.Timestamp("1997-09-01")).sum()  # the pushed ones are not written twice
        assert np.array_equal(served(url, customers, CALIBRATION_END), package.predict(rows.loc[customers]))


def test_a_served_request_is_no_transaction(clv_online):
    response = httpx.post(f"{clv_online}{EVENTS}", json={"instances": [{"customer_id": "00004"}]},
                          headers={"ce-type": "org.kubeflow.serving.inference.request", "ce-id": "1",
                                   "ce-source": "test", "ce-specversion": "1.0"})
    assert response.status_code == 400 and "ce-type" in response.json()["error"], response.text


README_EXAMPLE = re.compile(r"^curl -sS http://127.0.0.1:8080(?P<path>/v\d/models/clv\S+) -H '[^']*' -d '(?P<request>.*?)'"
                            r"\n# (?P<answer>\{[^\n]*\})$", re.M | re.S)


def test_the_readmes_commands_seed_the_store_score_a_customer_by_id_and_take_a_transaction(clv_package, data_home,
                                                                                           tmp_path, capsys):
    assert main(["seed", "clv", "--runs-dir", str(tmp_path)]) == 0  # as the README says: the store serve reads
    assert "seeded 69659 new transactions of clv" in capsys.readouterr().out
    use_case = load_use_case("clv")
    master = apply_contract(read_use_case_table(use_case).frame, use_case).kept
    package = LoadedPackage.load(clv_package)
    expected = package.predict(features_at(daily_purchases(master, use_case), CALIBRATION_END).loc[["00003"]])
    shown = [(m["path"], json.loads(m["request"]), json.loads(m["answer"]))
             for m in README_EXAMPLE.finditer(readme_examples.README.read_text())]
    assert [path for path, _, _ in shown] == [V1, V2, EVENTS]
    with running_server([str(clv_package)], extra_args=["--runs-dir", str(tmp_path)],
                        log_path=str(tmp_path / "server.log")) as url:
        for path, request, example in shown[:2]:
            answer = httpx.post(f"{url}{path}", json=request).json()
            assert readme_examples.shape(answer) == readme_examples.shape(example), answer
            assert readme_examples.decisions(answer) == package.segments(expected)
            value = answer["predictions"][0]["prediction"] if path == V1 else answer["outputs"][0]["data"][0]
            assert np.float32(value) == expected[0]
        path, request, example = shown[2]
        assert httpx.post(f"{url}{path}", json=request).json() == example
        # The pushed transaction is the customer's from then on, exactly as if the log had it.
        pushed = pd.DataFrame([{"customer_id": "00003", "date": pd.Timestamp("1998-07-02"), "dollar_value": 25.5}])
        later = features_at(daily_purchases(pd.concat([master, pushed]), use_case), date(1998, 7, 2)).loc[["00003"]]
        assert np.array_equal(served(url, ["00003"], date(1998, 7, 2)), package.predict(later))
        assert not np.array_equal(package.predict(later), package.predict(
            features_at(daily_purchases(master, use_case), date(1998, 7, 2)).loc[["00003"]]))
