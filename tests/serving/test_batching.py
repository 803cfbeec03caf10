"""Adaptive batching: concurrent requests share one transform and one predict, yet each gets exactly the answer
it gets alone, its own id, its own 400 and its own prediction-log line."""

import asyncio
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from serving_helpers import records_of
from flowline.inference_services.local_server import running_server
from flowline.inference_services.model import LoadedPackage, canary_takes
from flowline.package.format import verify

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

CANARY_PERCENT = 30
CONCURRENT = 64


def server_args(canary: Path, log: Path, wait_ms: str) -> list[str]:
    return ["--canary", f"churn={canary}", "--canary-percent", str(CANARY_PERCENT), "--prediction-log", str(log),
            "--batch-wait-ms", wait_ms, "--max-batch-rows", "32"]


@pytest.fixture(scope="module")
def servers(churn_package, churn_package_b, tmp_path_factory):
    """The same champion and canary served twice: batching off, and on with a long wait (so that batches form)."""
    folder = tmp_path_factory.mktemp("batching")
    logs = {"alone": folder / "alone.jsonl", "batched": folder / "batched.jsonl"}
    with running_server([f"churn={churn_package}"], log_path=str(folder / "alone.log"),
                        extra_args=server_args(churn_package_b, logs["alone"], "0")) as alone, \
            running_server([f"churn={churn_package}"], log_path=str(folder / "batched.log"),
                           extra_args=server_args(churn_package_b, logs["batched"], "20")) as batched:
        yield {"alone": alone, "batched": batched}, logs


def v2_body(records: list[dict], request_id: str) -> dict:
    columns = list(records[0])
    return {"id": request_id, "inputs": [
        {"name": c, "shape": [len(records)], "datatype": "BYTES" if isinstance(records[0][c], str) else "FP64",
         "data": [r[c] for r in records]} for c in columns]}


def mixed_requests(rows: list[dict], prefix: str) -> list[tuple[str, str, dict, dict]]:
    """(request id, path, body, headers): v1 and v2, one row and several, and two bad requests among them."""
    requests = []
    for n in range(CONCURRENT):
        request_id = f"{prefix}-{n}"
        chosen = rows[n % len(rows): n % len(rows) + (3 if n % 5 == 0 else 1)]
        if n == 17:  # a record without its first column: refused alone
            bad = {k: v for k, v in chosen[0].items() if k != next(iter(chosen[0]))}
            requests.append((request_id, "/v1/models/churn:predict", {"instances": [bad]}, {"x-request-id": request_id}))
        elif n == 40:  # a number out of float32's range in a v2 tensor
            body = v2_body(chosen, request_id)
            number = next(t for t in body["inputs"] if t["datatype"] == "FP64")
            number["data"] = [1e39, *number["data"][1:]]
            requests.append((request_id, "/v2/models/churn/infer", body, {}))
        elif n % 2:
            requests.append((request_id, "/v1/models/churn:predict", {"instances": chosen},
                             {"x-request-id": request_id}))
        else:
            requests.append((request_id, "/v2/models/churn/infer", v2_body(chosen, request_id), {}))
    return requests


async def send_all(url: str, requests: list, concurrently: bool) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONCURRENT)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        calls = [client.post(path, json=body, headers=headers) for _, path, body, headers in requests]
        if concurrently:
            return list(await asyncio.gather(*calls))
        return [await call for call in calls]


def batch_histogram(url: str) -> tuple[float, float]:
    """(batches scored, requests in them) of churn, from /metrics."""
    text = httpx.get(f"{url}/metrics").text
    found = {name: re.search(rf'^flowline_batch_requests_{name}{{model_name="churn"}} (\S+)$', text, re.M)
             for name in ("count", "sum")}
    return tuple(float(found[name][1]) if found[name] else 0.0 for name in ("count", "sum"))


def test_batched_answers_are_exactly_the_answers_alone(servers, churn_test_rows):
    urls, _ = servers
    requests = mixed_requests(records_of(churn_test_rows.head(30)), "batch")
    alone = asyncio.run(send_all(urls["alone"], requests, concurrently=False))
    before = batch_histogram(urls["batched"])
    for _ in range(3):
        batched = asyncio.run(send_all(urls["batched"], requests, concurrently=True))
        for (request_id, path, _, _), one, shared in zip(requests, alone, batched):
            assert shared.status_code == one.status_code, (request_id, shared.text, one.text)
            assert shared.content == one.content, request_id  # bit for bit: scores, decisions, ids, messages
    codes = [response.status_code for response in batched]
    assert codes.count(400) == 2 and codes[17] == codes[40] == 400 and codes.count(200) == CONCURRENT - 2
    assert "instances[0]: missing column" in batched[17].json()["error"]
    assert batched[40].json()["error"].startswith("inputs[0].")
    assert json.loads(batched[1].content)["id"] == "batch-1" and json.loads(batched[2].content)["id"] == "batch-2"
    assert len(json.loads(batched[5].content)["predictions"]) == 3  # several rows in one request, answered together
    batches, scored = (after - first for after, first in zip(batch_histogram(urls["batched"]), before))
    assert scored == 3 * (CONCURRENT - 2)  # every request that passed its checks was scored once
    assert batches < scored  # and some of them together
    assert batch_histogram(urls["alone"])[0] == batch_histogram(urls["alone"])[1]  # batching off: one by one


def test_each_batched_request_has_its_own_log_line_arm_and_version(servers, churn_package, churn_package_b,
                                                                   churn_test_rows):
    urls, logs = servers
    versions = {"champion": verify(churn_package)["version"], "canary": verify(churn_package_b)["version"]}
    requests = mixed_requests(records_of(churn_test_rows.head(30)), "log")
    logged = len(logs["batched"].read_text().splitlines())
    answers = asyncio.run(send_all(urls["batched"], requests, concurrently=True))
    lines = [json.loads(line) for line in logs["batched"].read_text().splitlines()[logged:]]
    assert sorted(line["request_id"] for line in lines) == sorted(request[0] for request in requests)
    by_id = {line["request_id"]: line for line in lines}
    for (request_id, _, body, _), answer in zip(requests, answers):
        line = by_id[request_id]
        arm = "canary" if canary_takes(request_id, CANARY_PERCENT) else "champion"
        assert line["arm"] == arm and line["version"] == versions[arm]
        if answer.status_code == 400:
            assert line["error"] == "BadRequest" and line["rows"] == 0
        else:
            assert line["error"] is None and answer.json()["model_version"] == versions[arm]
            rows = len(body["instances"]) if "instances" in body else body["inputs"][0]["shape"][0]
            assert line["rows"] == rows
    assert {line["arm"] for line in lines} == {"champion", "canary"}


def test_decisions_with_thresholds_equal_decide_and_row_thresholds(churn_package, churn_test_rows):
    loaded = LoadedPackage.load(churn_package)
    records = records_of(churn_test_rows)
    x = loaded.feature_set.transform_values(loaded.feature_set.record_values(records), len(records))
    scores = loaded.model.predict(x)
    positive, thresholds = loaded.decisions(scores, x, records)
    assert np.array_equal(positive, loaded.decide(scores, x, records))
    assert np.array_equal(thresholds, loaded.row_thresholds(len(records), records)) and thresholds.dtype == np.float32
    assert 0 < positive.sum() < len(records)


def test_a_records_threshold_is_its_groups_whatever_rows_came_before(churn_package, churn_test_rows):
    """Served records take their group's threshold from a cache of the attributes' values: each equals what a
    frame of all the rows gets, the first time and the next, and 1, 1.0 and "1" are one group, as in a frame."""
    loaded = LoadedPackage.load(churn_package)
    attributes = loaded.mitigation.attributes
    records = records_of(churn_test_rows)
    spelled = [{**record, **{a: float(record[a]) if isinstance(record[a], int) else record[a] for a in attributes}}
               for record in records[::2]]
    rows = records + spelled + [{**records[0], **{a: None for a in attributes}}]  # none: the "missing" group
    expected = loaded.mitigation.row_thresholds(pd.DataFrame.from_records(rows), loaded.use_case).astype(np.float32)
    assert len(set(expected.tolist())) > 1  # several groups, with their own thresholds
    for _ in range(2):  # computed, then remembered
        assert np.array_equal(loaded.row_thresholds(len(rows), rows), expected)
    assert [loaded.row_thresholds(1, [row])[0] for row in rows] == expected.tolist()
