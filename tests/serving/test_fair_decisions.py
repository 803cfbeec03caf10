"""Served churn decisions over every Telco row: monotone in the score within a group, and each one the
rule its answer names (its group's threshold), as the bias step reported it; and the README's example."""

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from flowline.contract import apply_contract, read_table, resolve_source
from flowline.inference_services.model import LoadedPackage
from flowline.pipelines.demo import v2_request
from serving_helpers import MAX_BATCH, records_of

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture(scope="module")
def loaded(churn_package) -> LoadedPackage:
    return LoadedPackage.load(churn_package)


@pytest.fixture(scope="module")
def telco(loaded) -> pd.DataFrame:
    """Every Telco customer the contract keeps, as an application would send them."""
    use_case = loaded.use_case
    return apply_contract(read_table(resolve_source(use_case)).frame, use_case).kept[use_case.feature_columns]


@pytest.fixture(scope="module")
def served(server, telco) -> pd.DataFrame:
    """The v1 answers for every Telco row: probability, decision and the threshold that decided."""
    answers = []
    with httpx.Client(base_url=server, timeout=60) as client:
        for start in range(0, len(telco), MAX_BATCH):
            response = client.post("/v1/models/churn:predict",
                                   json={"instances": records_of(telco.iloc[start:start + MAX_BATCH])})
            assert response.status_code == 200, response.text
            assert response.json()["decision_rule"] == "per-group thresholds"
            answers += response.json()["predictions"]
    return pd.DataFrame(answers, index=telco.index)


def test_within_a_group_a_higher_score_never_gets_a_worse_decision(served, telco):
    assert len(served) == 7043
    for group, answers in served.groupby(telco["SeniorCitizen"]):
        yes = answers["decision"] == "Yes"
        assert yes.any() and (~yes).any()
        # Every "No" scores below every "Yes" of its group.
        assert answers.loc[~yes, "probability"].max() < answers.loc[yes, "probability"].min(), group


def test_each_served_decision_is_its_groups_reported_threshold_rule(served, telco, churn_package, loaded):
    fairness = json.loads((Path(churn_package) / "evaluation.json").read_text())["fairness"]
    assert fairness["applied"] and fairness["mitigation"]["attributes"] == ["SeniorCitizen"]
    reported = {key: rule["threshold"] for key, rule in fairness["mitigation"]["groups"].items()}
    expected = telco["SeniorCitizen"].map(lambda senior: reported[f"SeniorCitizen={int(senior)}"]).astype(np.float32)
    assert served["threshold"].astype(np.float32).tolist() == expected.tolist()
    assert ((served["decision"] == "Yes") == (served["probability"] >= served["threshold"])).all()
    assert served["threshold"].nunique() == 2  # the groups' own thresholds, not one for all
    # The in-process rule the bias step judged gives the same decisions.
    assert loaded.labels(loaded.decide_frame(telco)) == served["decision"].tolist()


def readme_example() -> tuple[dict, dict]:
    """The README's v1 serving example: the request's instance and the answer it shows."""
    text = README.read_text()
    request = re.search(r"churn:predict -H 'Content-Type: application/json' -d '(.*?)'\n", text, re.S)
    answer = re.search(r"^# (\{\"predictions\".*\})$", text, re.M)
    return json.loads(request.group(1))["instances"][0], json.loads(answer.group(1))


def test_the_readmes_example_answer_is_consistent_and_what_the_server_answers(server, telco, churn_package):
    instance, shown = readme_example()
    assert instance.pop("customerID") == "7590-VHVEG"  # the id is echoed, not a feature
    assert instance == records_of(telco.head(1))[0]  # the demo's first Telco customer
    shown_row = shown["predictions"][0]
    assert shown["decision_rule"] == "per-group thresholds"
    assert shown_row["decision"] == ("Yes" if shown_row["probability"] >= shown_row["threshold"] else "No")
    answer = httpx.post(f"{server}/v1/models/churn:predict", json={"instances": [instance]}).json()
    row = answer["predictions"][0]
    assert row["decision"] == shown_row["decision"]
    assert row["decision"] == ("Yes" if row["probability"] >= row["threshold"] else "No")
    groups = json.loads((Path(churn_package) / "evaluation.json").read_text())["fairness"]["mitigation"]["groups"]
    assert row["threshold"] == pytest.approx(groups[f"SeniorCitizen={int(instance['SeniorCitizen'])}"]["threshold"])


def test_v2_answers_carry_each_rows_threshold(server, telco, served):
    """As `make demo` asks: one request per customer, a tensor per column from the model's v2 metadata."""
    metadata = httpx.get(f"{server}/v2/models/churn").json()
    for index, record in zip(telco.index[:8], records_of(telco.head(8))):
        response = httpx.post(f"{server}/v2/models/churn/infer", json=v2_request(record, metadata))
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o["data"][0] for o in response.json()["outputs"]}
        assert outputs["threshold"] == served.loc[index, "threshold"]
        assert outputs["decision"] == ("Yes" if outputs["probability"] >= outputs["threshold"] else "No")
        assert response.json()["parameters"]["decision_rule"] == "per-group thresholds"


@pytest.mark.parametrize("sent", ["1", "1.0", " 1", "01", "+1", 1.0])
def test_a_group_sent_as_text_is_the_group_the_contract_reads(server, telco, served, sent):
    """SeniorCitizen sent as any text ingest reads as 1 (or as 1.0) decides by the seniors' threshold, as batch
    scoring does for the same row, not by the threshold of a group nobody was fitted for."""
    index = telco.index[telco["SeniorCitizen"] == 1][0]
    record = {**records_of(telco.loc[[index]])[0], "SeniorCitizen": sent}
    response = httpx.post(f"{server}/v1/models/churn:predict", json={"instances": [record]})
    assert response.status_code == 200, response.text
    row = response.json()["predictions"][0]
    assert row["threshold"] == served.loc[index, "threshold"]
    assert row["decision"] == served.loc[index, "decision"]
