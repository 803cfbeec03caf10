"""The feature registry: the feature sets of recorded packages listed and compared through `flowline features`,
and one entity-feature definition shared by two use cases, each packaged for real."""

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from flowline.feature_registry import describe, entity_outputs, with_owner_outputs
from flowline.features.engineering import engineer_features
from flowline.features.kinds import EntityFeatures, FeatureError
from flowline.package.format import LINEAGE_FILE, Package
from flowline.pipelines.cli import EXIT_ERROR, main
from flowline.pipelines.cli.common import EXIT_FEATURES_DIFFER
from flowline.inference_services.local_server import running_server
from flowline.online_store import open_store
from flowline.registry import RegistryError
from flowline.use_case_loader import load_use_case
from redis_server import redis_server_binary, running_redis
from serving_helpers import build_package, recorded

pytestmark = pytest.mark.xdist_group("serving")  # the packages are built once, in one worker


def ran(capsys, *argv: str, code: int = 0) -> str:
    assert main(list(argv)) == code
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def runs(churn_package, churn_package_b, card_package, churn, data_home, tmp_path_factory) -> Path:
    """Two churn runs and one card-fraud run, recorded as `flowline run` records them."""
    from serving_helpers import card_use_case

    runs = tmp_path_factory.mktemp("feature-runs")
    recorded(runs, churn_package, churn, "churn-1")
    recorded(runs, churn_package_b, churn, "churn-2")
    recorded(runs, card_package, card_use_case(data_home), "card-fraud-1")
    return runs


def test_features_lists_each_feature_set_with_its_definitions_data_and_packages(runs, churn_package,
                                                                                churn_package_b, card_package, capsys):
    churn_a, churn_b, card = (Package.open(p) for p in (churn_package, churn_package_b, card_package))
    listed = json.loads(ran(capsys, "features", "--runs-dir", str(runs), "--json"))
    by_version = {entry["version"]: entry for entry in listed}
    assert set(by_version) == {churn_a.feature_set.version, churn_b.feature_set.version, card.feature_set.version}
    for package, stage, run in ((churn_a, "champion", "churn-1"), (churn_b, "rejected", "churn-2"),
                                (card, "champion", "card-fraud-1")):
        entry = by_version[package.feature_set.version]
        assert {"version": package.version, "use_case": package.use_case.name, "stage": stage,
                "path": str(runs / run / "package")} in entry["packages"]
        lineage = json.loads((package.path / LINEAGE_FILE).read_text())
        assert entry["dataset_sha256"] == [lineage["dataset"]["source_sha256"]]
        assert lineage["feature_set"]["version"] == entry["version"]
        fitted = package.feature_set
        assert entry["definition"]["inputs"] == fitted.input_columns and entry["definition"]["width"] == fitted.width
        assert [g["name"] for g in entry["definition"]["generated"]] == fitted.generated_names
        assert all(g["definition"] for g in entry["definition"]["generated"])
        assert entry["definition"]["encodings"] == {
            column: {"encoding": encoding, "categories": len(next(
                i.categories for i in fitted.categorical if i.column == column))}
            for column, encoding in fitted.plan.encodings.items()}
    contract = by_version[churn_a.feature_set.version]["definition"]["encodings"]["Contract"]
    assert contract["categories"] == 3
    churn_only = json.loads(ran(capsys, "features", "list", "churn", "--runs-dir", str(runs), "--json"))
    assert {entry["version"] for entry in churn_only} == {churn_a.feature_set.version, churn_b.feature_set.version}
    table = ran(capsys, "features", "--runs-dir", str(runs))
    assert re.search(f"feature set +{card.feature_set.version}\n", table)
    assert f"{card.version} (card-fraud, champion)" in table and "generated feature" in table
    assert re.search(f"data sha256 +{by_version[card.feature_set.version]['dataset_sha256'][0]}\n", table)
    assert re.search("encodings +.*Contract \\(3 values\\)", table)
    assert ran(capsys, "features", "list", "fraud", "--runs-dir", str(runs)).startswith("no feature sets recorded")


def test_a_package_that_does_not_verify_is_left_out_with_a_warning(churn_package, card_package, churn, data_home,
                                                                   tmp_path: Path, capsys):
    from serving_helpers import card_use_case

    runs = tmp_path / "runs"
    recorded(runs, card_package, card_use_case(data_home), "card-fraud-1")
    copy = recorded(runs, churn_package, churn, "churn-1")
    feature_set = copy / "feature_set.json"
    feature_set.write_text(feature_set.read_text().replace('"one_hot"', '"frequency"', 1))
    assert main(["features", "--runs-dir", str(runs), "--json"]) == 0
    captured = capsys.readouterr()
    assert [entry["use_cases"] for entry in json.loads(captured.out)] == [["card-fraud"]]
    error = captured.err
    assert f"package {Package.open(card_package).version}" not in error
    assert "(churn) left out: " in error and "feature_set.json has sha256" in error


def test_diff_of_two_packages_of_other_use_cases_names_what_changed(runs, churn_package, card_package, capsys):
    churn, card = Package.open(churn_package), Package.open(card_package)
    changes = json.loads(ran(capsys, "features", "diff", churn.version, card.version[:8], "--runs-dir", str(runs),
                             "--json", code=EXIT_FEATURES_DIFFER))
    assert changes["a"] == f"package {churn.version} of churn" and changes["b"] == f"package {card.version} of card-fraud"
    assert changes["same"] is False
    assert set(changes["inputs_removed"]) == set(churn.feature_set.input_columns)
    assert set(changes["inputs_added"]) == set(card.feature_set.input_columns)
    assert changes["label"] == [{"column": "Churn", "positive": "Yes"}, {"column": "Class", "positive": "1"}]
    text = ran(capsys, "features", "diff", str(churn_package), card.feature_set.version, "--runs-dir", str(runs),
               code=EXIT_FEATURES_DIFFER)
    assert f"B: feature set {card.feature_set.version}, from package {card.version} of card-fraud" in text
    assert f"A: feature set {churn.feature_set.version}, from package {churn.version} of churn" in text
    assert "inputs added: " in text
    assert "label: Churn (positive: Yes) -> Class (positive: 1)" in text


def test_diff_names_changed_encodings_transforms_generated_features_and_vocabulary_sizes(runs, churn_package,
                                                                                          tmp_path: Path, capsys):
    """A FeatureSet refitted from the package's own plan on other rows, with one encoding and one transform
    changed and one generated feature more, against the package's."""
    from flowline.features.feature_set import FeatureSet

    package = Package.open(churn_package)
    before = package.feature_set
    train = pd.read_parquet(churn_package.parent / "train")
    fewer = train[train["PaymentMethod"] != "Mailed check"]  # one category of PaymentMethod never seen
    plain = next(column for column, transform in describe(before)["transforms"].items() if transform == "identity")
    added = next(feature for feature in ({"kind": "ratio", "numerator": "TotalCharges", "denominator": "tenure"},
                                         {"kind": "ratio", "numerator": "tenure", "denominator": "TotalCharges"})
                 if feature not in before.plan.generated)
    plan = before.plan.with_encoding("Contract", "frequency").with_transform(plain, "log1p").with_generated(added)
    refitted = FeatureSet.fit(fewer, package.use_case, plan)
    refitted.save(tmp_path / "refitted.json")
    changes = json.loads(ran(capsys, "features", "diff", package.version, str(tmp_path / "refitted.json"),
                             "--runs-dir", str(runs), "--json", code=EXIT_FEATURES_DIFFER))
    before_encoding = before.plan.encodings["Contract"]
    assert changes["encodings_changed"] == {"Contract": [before_encoding, "frequency"]}
    assert changes["transforms_changed"] == {plain: ["identity", "log1p"]}
    assert changes["generated_added"] == [f"{added['numerator']}/{added['denominator']}"]
    assert changes["generated_removed"] == []
    assert changes["vocabularies"] == {"PaymentMethod": {"before": 4, "after": 3, "added": 0, "removed": 1}}
    assert changes["inputs_added"] == changes["inputs_removed"] == [] and changes["label"] is None
    assert "fill of MonthlyCharges" in changes["refitted"]
    text = ran(capsys, "features", "diff", package.version, str(tmp_path / "refitted.json"), "--runs-dir", str(runs),
               code=EXIT_FEATURES_DIFFER)
    assert f"encoding of Contract: {before_encoding} -> frequency" in text
    assert "vocabulary of PaymentMethod: 4 -> 3 values (0 new, 1 gone)" in text
    assert "Mailed check" not in text  # counts, never the values
    same = ran(capsys, "features", "diff", package.version, before.version, "--runs-dir", str(runs))
    assert "the same feature set: nothing changed" in same


def test_diff_of_an_unknown_or_ambiguous_name_is_a_clear_error(runs, tmp_path: Path, capsys):
    assert main(["features", "diff", "zz-none", "churn", "--runs-dir", str(runs)]) == EXIT_ERROR
    error = capsys.readouterr().err
    assert "'zz-none' is no package folder, use case or package version" in error
    assert "`flowline features` lists the feature-set versions" in error
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    assert main(["features", "diff", str(tmp_path / "other.json"), "churn", "--runs-dir", str(runs)]) == EXIT_ERROR
    assert "other.json is not a FeatureSet file: not a FeatureSet document" in capsys.readouterr().err


# ---- one entity-feature definition, two use cases


def payments(seed: int, cards: int = 160) -> pd.DataFrame:
    """Card payments over 60 days; a card in a burst (several payments within minutes) is likely fraud,
    and a payment through the online channel is likely disputed."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2026-01-01")
    for card in range(cards):
        times = sorted(rng.uniform(0, 60 * 86400, rng.integers(3, 10)))
        if rng.random() < 0.3:
            at = rng.uniform(0, 59 * 86400)
            times = sorted(times + [at + rng.uniform(0, 1800) for _ in range(4)])
        for t in times:
            close = sum(abs(t - u) < 3600 for u in times) - 1
            channel = str(rng.choice(["shop", "online", "phone"]))
            flagged = rng.random() < (0.8 if close >= 2 else 0.05)
            disputed = rng.random() < (0.6 if channel == "online" else 0.1)
            rows.append({"txn": f"t{len(rows)}", "card": f"c{card}", "at": (start + pd.Timedelta(seconds=t)).isoformat(),
                         "amount": round(float(rng.lognormal(3, 1)), 2), "channel": channel,
                         "flag": "yes" if flagged else "no", "disputed": "yes" if disputed else "no"})
    return pd.DataFrame(rows)


def card_document(name: str, label: str, columns: dict, features: dict) -> dict:
    return {"name": name, "task": "binary", "data": {"path": f"{name}.csv"},
            "label": {"column": label, "positive": "yes", "values": ["no", "yes"]},
            "id_columns": ["txn"], "time_column": "at",
            "columns": {"txn": {"type": "string"}, "card": {"type": "string"}, "at": {"type": "datetime"},
                        "amount": {"type": "number", "min": 0}, **columns},
            "features": features, "costs": {"false_negative": 10, "false_positive": 1},
            "tuning": {"families": {"xgboost": 1, "linear": 1}, "max_boost_rounds": 100}}


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    """`cards` owns the entity features of cards (by card, over at, summing amount); `disputes`, another
    label on other payments with one column more, reuses them by name. Each is packaged; runs has both."""
    folder = tmp_path_factory.mktemp("shared-definition")
    payments(0).drop(columns=["channel", "disputed"]).to_csv(folder / "cards.csv", index=False)
    payments(1, cards=200).drop(columns=["flag"]).to_csv(folder / "disputes.csv", index=False)
    owner_document = card_document("cards", "flag", {}, {"entity_column": "card", "amount_columns": ["amount"]})
    reuser_document = card_document("disputes", "disputed", {"channel": {"type": "category"}},
                                    {"entity_features_from": "cards"})
    for document in (owner_document, reuser_document):
        (folder / f"{document['name']}.yaml").write_text(yaml.safe_dump(document))
    owner, reuser = load_use_case(folder / "cards.yaml"), load_use_case(folder / "disputes.yaml")
    runs = folder / "runs"
    with pytest.raises(RegistryError, match="reuses the entity features of 'cards'.*run `flowline run cards` first"):
        with_owner_outputs(reuser, runs)
    owner_package = recorded(runs, build_package(owner, folder / "cards-build", trials=1), owner, "cards-1")
    pinned = with_owner_outputs(reuser, runs)
    reuser_package = recorded(runs, build_package(pinned, folder / "disputes-build", trials=1), pinned, "disputes-1")
    return {"folder": folder, "runs": runs, "owner": owner, "reuser": reuser, "pinned": pinned,
            "owner_package": Package.open(owner_package), "reuser_package": Package.open(reuser_package),
            "served": [str(owner_package), str(reuser_package)]}


def entity_block(package: Package) -> EntityFeatures:
    return next(f for f in package.feature_set.features if isinstance(f, EntityFeatures))


def test_two_use_cases_sharing_a_definition_compute_the_same_entity_features(shared):
    owner, reuser = shared["owner_package"], shared["reuser_package"]
    assert reuser.use_case.entity_definition == owner.use_case.entity_definition == "cards"
    owned, reused = entity_block(owner), entity_block(reuser)
    assert ["count", 3600.0] in [list(o) for o in owned.outputs]  # the owner's search found the bursts
    assert reused.outputs == owned.outputs and reused.names == owned.names
    assert (reused.history.entity, reused.history.time, reused.history.amounts) == ("card", "at", ("amount",))
    assert shared["pinned"].features.entity_outputs == entity_outputs(owner.feature_set)
    assert "channel" in reuser.feature_set.input_columns  # its own columns are its own


def test_the_registry_shows_the_shared_definition_and_diff_leaves_the_entity_features_out(shared, capsys):
    owner, reuser, runs = shared["owner_package"], shared["reuser_package"], str(shared["runs"])
    listed = json.loads(ran(capsys, "features", "--runs-dir", runs, "--json"))
    assert [(entry["use_cases"], entry["entity_definitions"]) for entry in listed] == [
        (["cards"], ["cards"]), (["disputes"], ["cards"])]
    assert listed[0]["definition"]["entity"]["outputs"] == listed[1]["definition"]["entity"]["outputs"]
    assert "by card over at, definition cards" in ran(capsys, "features", "list", "disputes", "--runs-dir", runs)
    changes = json.loads(ran(capsys, "features", "diff", "cards", "disputes", "--runs-dir", runs, "--json",
                             code=EXIT_FEATURES_DIFFER))
    assert not set(entity_block(owner).names) & set(changes["generated_added"] + changes["generated_removed"])
    assert changes["inputs_added"] == ["channel"]
    entities = changes["vocabularies"]["card"]  # other payments, other cards known: counted, not named
    assert entities["before"] == len(entity_block(owner).history.events)
    assert entities["after"] == len(entity_block(reuser).history.events)


def test_a_pod_serving_a_definitions_owner_and_reader_seeds_it_again_from_readiness_when_redis_lost_it(
        shared, tmp_path):
    """The reader's request finds the history gone and makes the pod unready, so no request reaches the owner:
    it stayed unready for good. The owner's readiness looks for its seed mark, and seeds the history again."""
    row = {"txn": "t-x", "card": "c1", "at": "2026-03-01T10:00:00", "amount": 4.0}
    (tmp_path / "redis").mkdir()
    with running_redis(redis_server_binary(), tmp_path / "redis") as url, \
            running_server(shared["served"], extra_args=["--online-store", url]) as served, \
            httpx.Client(base_url=served, timeout=30) as client:
        dispute = {"instances": [{**row, "channel": "online"}]}
        assert client.post("/v1/models/disputes:predict", json=dispute).status_code == 200
        open_store(url)._client.flushall()  # what a restart without persistence leaves
        lost = client.post("/v1/models/disputes:predict", json=dispute)
        assert lost.status_code == 503 and "holds no history of definition 'cards'" in lost.json()["error"]
        client.get("/v2/health/ready")  # the owner seeds it again (the reader may be asked first)
        assert open_store(url).is_seeded("cards")
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post("/v1/models/disputes:predict", json=dispute).status_code == 200


def test_a_reuser_without_its_owners_outputs_refuses_to_search_its_own(shared, capsys):
    reuser, folder = shared["reuser"], shared["folder"]
    frame = pd.read_csv(folder / "disputes.csv")
    with pytest.raises(FeatureError, match="reuses the entity features of 'cards'.*features.entity_outputs"):
        engineer_features(frame, frame, reuser)
    empty = folder / "no-runs"
    assert main(["run", "--use-case", str(folder / "disputes.yaml"), "--runs-dir", str(empty)]) == EXIT_ERROR
    assert "whose window outputs come from the champion package of 'cards'; " in capsys.readouterr().err


def strings_in(document) -> list[str]:
    if isinstance(document, dict):
        return [text for value in document.values() for text in strings_in(value)]
    if isinstance(document, list):
        return [text for value in document for text in strings_in(value)]
    return [document] if isinstance(document, str) else []


def test_a_compiled_pipeline_carries_the_owners_outputs(shared, tmp_path: Path, capsys):
    compiled = tmp_path / "disputes-pipeline.yaml"
    assert main(["compile", "--use-case", str(shared["folder"] / "disputes.yaml"), "-o", str(compiled),
                 "--source", "https://data.example/disputes.csv", "--runs-dir", str(shared["runs"])]) == 0
    specs = [json.loads(text) for text in strings_in(list(yaml.safe_load_all(compiled.read_text())))
             if text.startswith('{"name":"disputes"')]
    assert specs and all(spec["features"]["entity_outputs"] == entity_outputs(shared["owner_package"].feature_set)
                         and spec["features"]["entity_features_from"] == "cards" for spec in specs)
