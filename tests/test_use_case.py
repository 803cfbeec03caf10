from pathlib import Path

import pytest
import yaml

from flowline.use_case import UseCaseError
from flowline.use_case_loader import USE_CASES_DIR, load_use_case


def churn_document() -> dict:
    return yaml.safe_load((USE_CASES_DIR / "churn.yaml").read_text())


def load_changed(tmp_path: Path, change) -> object:
    document = churn_document()
    change(document)
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_use_case(path)


def test_churn_states_everything_the_pipeline_needs(churn):
    assert churn.task == "binary" and churn.label.column == "Churn" and churn.label.positive == "Yes"
    assert churn.id_columns == ["customerID"]
    assert churn.sensitive_attributes == ["gender", "SeniorCitizen"]
    assert churn.costs.false_negative > churn.costs.false_positive
    assert "customerID" not in churn.feature_columns and "tenure" in churn.feature_columns
    assert churn.gates["roc_auc"].min == 0.80
    assert churn.tuning.families == {"xgboost": 30, "linear": 20, "forest": 12, "mlp": 16}
    assert churn.trials_for("mlp") == 16 and churn.trials_for("mlp", override=2) == 2
    assert churn.features.search and churn.tuning.backend == "auto" and churn.ensemble.top_k == 3


def test_an_unknown_name_that_is_a_file_without_its_extension_says_so(tmp_path: Path, monkeypatch):
    """`--use-case my-churn` beside my-churn.yaml said only that no built-in use case has that name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-churn.yaml").write_text((USE_CASES_DIR / "churn.yaml").read_text())
    with pytest.raises(UseCaseError, match=r"unknown use case 'my-churn' \(did you mean the file my-churn.yaml\?\); "
                                           r"built-in use cases: churn"):
        load_use_case("my-churn")
    with pytest.raises(UseCaseError, match=r"unknown use case 'nothing'; built-in"):
        load_use_case("nothing")


def test_unknown_key_is_named(tmp_path: Path):
    with pytest.raises(UseCaseError, match=r"tuning\.trails: unknown key"):
        load_changed(tmp_path, lambda d: d["tuning"].update(trails=5))


def test_a_label_value_yaml_read_as_a_number_or_boolean_says_to_quote_it(tmp_path: Path):
    quote = r"write it in quotes \(YAML reads 1 unquoted as a number, and yes, no, on and off as true and false\)"
    with pytest.raises(UseCaseError, match=rf"label\.positive: expected text, got 1: {quote}"):
        load_changed(tmp_path, lambda d: d["label"].update(positive=1))
    with pytest.raises(UseCaseError, match=rf"columns\.Partner\.allowed\.0: expected text, got True: {quote}"):
        load_changed(tmp_path, lambda d: d["columns"]["Partner"].update(allowed=[True, False]))


def test_undeclared_column_is_named(tmp_path: Path):
    with pytest.raises(UseCaseError, match="sensitive_attributes: column 'gendr' is not declared"):
        load_changed(tmp_path, lambda d: d.update(sensitive_attributes=["gendr"]))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.update(task="multiclass"), "task"),
        (lambda d: d["split"].update(test_size=1.5), "split.test_size"),
        (lambda d: d["columns"]["tenure"].update(type="int"), "columns.tenure.type"),
        (lambda d: d["label"].update(positive="Maybe"), "label.positive 'Maybe'"),
        (lambda d: d["gates"].update(accuracy_score={"min": 0.5}), "unknown metric 'accuracy_score'"),
        (lambda d: d.update(name="Churn Model"), "name"),
        (lambda d: d["tuning"].update(families={"svm": 3}), "tuning.families.svm"),
        (lambda d: d["tuning"].update(families={"mlp": 0}), "mlp: give 1 to 100,000 trials"),
        (lambda d: d["tuning"].update(families={"xgboost": 9_999_999_999}), "xgboost: give 1 to 100,000 trials"),
        (lambda d: d["tuning"].update(seed=-1), "tuning.seed"),
        (lambda d: d.update(ensemble={"folds": 100_000}), "ensemble.folds"),
        (lambda d: d["tuning"].update(seed=2**32), "tuning.seed"),
        (lambda d: d["tuning"].update(time_budget=float("inf")), "tuning.time_budget"),
        (lambda d: d["tuning"].update(trial_seconds=float("nan")), "tuning.trial_seconds"),
        (lambda d: d["tuning"].update(backend="ray"), "tuning.backend"),
        (lambda d: d["tuning"].update(time_budget=0), "tuning.time_budget"),
        (lambda d: d["tuning"].update(time_budget="soon"), "tuning.time_budget"),
        (lambda d: d["tuning"].update(trial_seconds=-5), "tuning.trial_seconds"),
        (lambda d: d["tuning"].update(metric="f1"), "tuning.metric"),
        (lambda d: d["features"].update(entity_column="customerID"), "features.entity_column needs time_column"),
        (lambda d: d["features"].update(amount_columns=["Contract"]), "column 'Contract' is not numeric"),
        (lambda d: d["features"].update(amount_columns=["Amount"]), "column 'Amount' is not declared"),
        (lambda d: d["columns"]["Contract"].update(format="%Y"), "format, earliest and latest apply to datetime columns only"),
        (lambda d: d["columns"].update(signup={"type": "datetime"}), "a datetime column must be the time_column"),
        (lambda d: d.update(time_column="Contract"), "must be a datetime or numeric column"),
        # costs under which no threshold pays: the run had flagged 2 of 98 frauds with every gate passed
        (lambda d: d.update(costs={"false_negative": 5, "false_positive": 5, "true_positive": 5}),
         "false_negative (5) must be above true_positive (5)"),
        (lambda d: d.update(costs={"false_negative": 0, "false_positive": 0}), "costs"),
        (lambda d: d.update(costs={"false_negative": 5, "false_positive": 0}), "false_positive is 0"),
        (lambda d: d.update(costs={"false_negative": float("inf"), "false_positive": 1}), "costs.false_negative"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, change, named: str):
    with pytest.raises(UseCaseError) as caught:
        load_changed(tmp_path, change)
    assert named in str(caught.value)


def test_tuning_metric_applies_to_binary_tasks(tmp_path: Path):
    document = yaml.safe_load((USE_CASES_DIR / "clv.yaml").read_text())
    document.setdefault("tuning", {})["metric"] = "auprc"
    path = tmp_path / "clv.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(UseCaseError, match="tuning.metric applies to binary tasks; a regression search minimises"):
        load_use_case(path)


def test_relative_data_path_is_resolved_against_the_yaml_folder(tmp_path: Path):
    use_case = load_changed(tmp_path, lambda d: d.update(data={"path": "rows.csv"}))
    assert use_case.data.path == str(tmp_path / "rows.csv")


def test_unknown_built_in_name_lists_the_known_ones():
    with pytest.raises(UseCaseError, match="built-in use cases: .*churn"):
        load_use_case("chrun")


def test_round_trips_through_json(churn):
    assert type(churn).model_validate_json(churn.model_dump_json()) == churn


def test_the_time_and_entity_columns_are_not_encoded_as_they_are(tmp_path: Path):
    def change(document: dict) -> None:
        document["columns"].update(signup={"type": "datetime", "format": "%Y-%m-%d"}, account={"type": "string"})
        document.update(time_column="signup")
        document["features"].update(entity_column="account", amount_columns=["MonthlyCharges"])

    use_case = load_changed(tmp_path, change)
    assert "signup" not in use_case.feature_columns and "account" not in use_case.feature_columns
    assert "MonthlyCharges" in use_case.feature_columns


def card_document(name: str, **features) -> dict:
    """A card-payments use case: one row per payment of a card, at a time, with an amount."""
    return {"name": name, "task": "binary", "data": {"path": f"{name}.csv"},
            "label": {"column": "fraud", "positive": "yes", "values": ["no", "yes"]},
            "id_columns": ["txn"], "time_column": "at",
            "columns": {"txn": {"type": "string"}, "card": {"type": "string"}, "at": {"type": "datetime"},
                        "amount": {"type": "number", "min": 0}},
            "features": features, "costs": {"false_negative": 10, "false_positive": 1}}


def write_use_case(folder: Path, document: dict) -> Path:
    path = folder / f"{document['name']}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_use_case_reuses_the_entity_definition_of_another_by_name(tmp_path: Path):
    write_use_case(tmp_path, card_document("cards", entity_column="card", amount_columns=["amount"]))
    reuser = load_use_case(write_use_case(tmp_path, card_document("disputes", entity_features_from="cards")))
    assert (reuser.features.entity_column, reuser.features.amount_columns) == ("card", ["amount"])
    assert reuser.entity_definition == "cards" and load_use_case(tmp_path / "cards.yaml").entity_definition == "cards"
    assert "card" not in reuser.feature_columns and "card" in reuser.subject_columns
    assert type(reuser).model_validate_json(reuser.model_dump_json()) == reuser  # as a package carries it
    assert load_use_case("churn").entity_definition == "churn"


@pytest.mark.parametrize(("owner", "reuser", "named"), [
    ({}, {"entity_features_from": "nobody"}, "features.entity_features_from: no use case 'nobody': looked for "),
    ({}, {"entity_features_from": "cards"}, "'cards' defines no entity features"),
    ({"entity_features_from": "third"}, {"entity_features_from": "cards"},
     "'cards' reuses the definition of 'third' itself; name that owner instead"),
    ({"entity_column": "card"}, {"entity_features_from": "cards", "entity_column": "txn"},
     "features.entity_column 'txn' differs from 'cards''s 'card'"),
    ({"entity_column": "card", "amount_columns": ["fee"]}, {"entity_features_from": "cards"},
     "reads column 'fee' of type number; declare it in columns with that type"),
    ({"entity_column": "card"}, {"entity_features_from": "disputes"}, "names this use case itself"),
    ({"entity_column": "card"}, {"entity_column": "card", "entity_outputs": [["count", "an hour"]]},
     "features.entity_outputs: ['count', 'an hour']: give [recency], [count, SECONDS]"),
    ({"entity_column": "card"}, {"entity_column": "card", "entity_outputs": [["sum", 3600, "amount"]]},
     "features.entity_outputs: 'amount' is not one of features.amount_columns"),
])
def test_a_bad_reuse_names_the_field(tmp_path: Path, owner: dict, reuser: dict, named: str):
    owner_document = card_document("cards", **owner)
    owner_document["columns"]["fee"] = {"type": "number"}
    write_use_case(tmp_path, owner_document)
    with pytest.raises(UseCaseError) as caught:
        load_use_case(write_use_case(tmp_path, card_document("disputes", **reuser)))
    assert named in str(caught.value) and "disputes.yaml is not a valid use case" in str(caught.value)


def test_a_reuser_runs_over_the_owners_time_column(tmp_path: Path):
    write_use_case(tmp_path, card_document("cards", entity_column="card"))
    document = card_document("disputes", entity_features_from="cards")
    document["columns"]["booked"] = document["columns"].pop("at")
    document["time_column"] = "booked"
    with pytest.raises(UseCaseError, match="the definition of 'cards' runs over time_column 'at'; this use case's "
                                           "is 'booked'"):
        load_use_case(write_use_case(tmp_path, document))


def test_an_entity_column_must_be_text_even_when_its_values_are_digits():
    """The contract reads a number as a float (card 18 as 18.0) but a request sends 18: a numeric entity's keys
    would differ between the fitted history, served requests and batch scoring."""
    from payments import payments_use_case

    columns = {"txn": {"type": "string"}, "card": {"type": "integer"}, "at": {"type": "datetime"},
               "amount": {"type": "number", "min": 0}}
    with pytest.raises(ValueError, match=r"features\.entity_column: column 'card' is a key, not a quantity: "
                                         r"declare it \{type: string\}"):
        payments_use_case(columns=columns)
    assert payments_use_case().features.entity_column == "card"  # declared string: fine
