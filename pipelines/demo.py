"""The serving half of `make demo`: serve a run's package, call it over v2 and v1, print the answers.

    python -m flowline.pipelines.demo SUMMARY_JSON

It takes the first row of the use case's data, sends it as an Open Inference Protocol
v2 request (one tensor per raw column, built from the model's v2 metadata) and as a
KServe v1 explain request, prints both answers, and stops the server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx

from flowline.contract import apply_contract, read_use_case_table
from flowline.package.format import Package
from flowline.inference_services.local_server import running_server


def first_record(package: str) -> dict:
    """The first row of the data the package was trained on, as an application would send it."""
    use_case = Package.open(package).use_case
    kept = apply_contract(read_use_case_table(use_case).frame, use_case).kept  # its separator and encoding
    return json.loads(kept[use_case.feature_columns].head(1).to_json(orient="records"))[0]


def v2_request(record: dict, metadata: dict) -> dict:
    return {"inputs": [
        {"name": spec["name"], "datatype": spec["datatype"], "shape": [1], "data": [record[spec["name"]]]}
        for spec in metadata["inputs"]
    ]}


def main(summary_path: str) -> None:
    summary = json.loads(Path(summary_path).read_text())
    name, package = summary["use_case"], summary["package"]
    record = first_record(package)
    print(f"serving {package} as {name!r} on loopback")
    with running_server([package]) as url, httpx.Client(base_url=url, timeout=30) as client:
        metadata = client.get(f"/v2/models/{name}").json()
        infer = client.post(f"/v2/models/{name}/infer", json=v2_request(record, metadata))
        print(f"\nPOST {url}/v2/models/{name}/infer -> {infer.status_code}")
        print(json.dumps(infer.json(), indent=1))
        explain = client.post(f"/v1/models/{name}:explain", json={"instances": [record]})
        print(f"\nPOST {url}/v1/models/{name}:explain -> {explain.status_code}")
        print(json.dumps(explain.json(), indent=1))
    print("\nserver stopped")
    if infer.status_code != 200 or explain.status_code != 200:
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1])
