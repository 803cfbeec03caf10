import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from flowline.features.feature_set import FeatureSet
from flowline.features.kinds import FeatureError
from flowline.features.plan import FeaturePlan, default_plan
from flowline.contract import apply_contract, read_table, resolve_source
from payments import payments_use_case, transactions


@pytest.fixture(scope="module")
def telco(data_home, churn) -> pd.DataFrame:
    return apply_contract(read_table(resolve_source(churn)).frame, churn).kept


@pytest.fixture(scope="module")
def fitted(telco, churn) -> FeatureSet:
    return FeatureSet.fit(telco.iloc[:5000], churn)


@pytest.fixture(scope="module")
def engineered(telco, churn) -> FeatureSet:
    """Every kind of encoding and generated feature churn's columns allow."""
    plan = (default_plan(telco, churn).with_encoding("Contract", "target").with_encoding("PaymentMethod", "frequency")
            .with_transform("tenure", "log1p")
            .with_generated({"kind": "product", "left": "tenure", "right": "MonthlyCharges"})
            .with_generated({"kind": "product", "left": "tenure", "right": "tenure"})
            .with_generated({"kind": "ratio", "numerator": "TotalCharges", "denominator": "tenure"}))
    return FeatureSet.fit(telco.iloc[:5000], churn, plan)


@pytest.mark.parametrize("which", ["fitted", "engineered"])
def test_batch_row_i_equals_record_i_exactly(telco, which, request):
    feature_set = request.getfixturevalue(which)
    batch = feature_set.transform(telco)
    records = telco.to_dict("records")
    singles = np.stack([feature_set.transform_record(record) for record in records])
    assert batch.dtype == singles.dtype == np.float32
    assert np.array_equal(batch, singles)


def test_raw_json_records_match_the_typed_batch(write_csv, telco, fitted, churn):
    """A serving request carries raw text and numbers, as in the CSV, not pandas types."""
    raw = read_table(resolve_source(churn)).frame
    records = json.loads(raw.head(300).to_json(orient="records"))
    singles = np.stack([fitted.transform_record(record) for record in records])
    assert np.array_equal(fitted.transform(telco.head(300)), singles)


def test_blank_numbers_are_imputed_as_the_use_case_says(telco, fitted):
    blank = telco[telco["TotalCharges"].isna()]
    position = fitted.feature_names.index("TotalCharges")
    assert len(blank) == 11 and (fitted.transform(blank)[:, position] == 0).all()
    tenure = fitted.numeric[[f.column for f in fitted.numeric].index("tenure")]
    assert tenure.fill == float(telco.iloc[:5000]["tenure"].median())


def test_unknown_and_missing_categories_set_no_indicator(telco, fitted):
    record = telco.iloc[0].to_dict()
    known = fitted.transform_record(record)
    contract = [i for i, name in enumerate(fitted.feature_names) if name.startswith("Contract=")]
    assert known[contract].sum() == 1
    for value in ("Three year", None):
        assert fitted.transform_record({**record, "Contract": value})[contract].sum() == 0


def test_bad_input_names_the_column(telco, fitted):
    record = telco.iloc[0].to_dict()
    with pytest.raises(FeatureError, match="missing column 'tenure'"):
        fitted.transform_record({k: v for k, v in record.items() if k != "tenure"})
    with pytest.raises(FeatureError, match="column 'MonthlyCharges': 'lots' is not a number"):
        fitted.transform_record({**record, "MonthlyCharges": "lots"})
    with pytest.raises(FeatureError, match="column 'MonthlyCharges': 'lots' is not a number"):
        fitted.transform(telco.head(3).assign(MonthlyCharges=["1", "lots", "2"]))
    with pytest.raises(FeatureError, match=r"missing column\(s\) \['tenure'\]"):
        fitted.transform(telco.drop(columns="tenure"))


def test_saved_and_loaded_it_transforms_identically(tmp_path, telco, fitted):
    path = tmp_path / "feature_set.json"
    fitted.save(path)
    loaded = FeatureSet.load(path)
    assert loaded.version == fitted.version and loaded.feature_names == fitted.feature_names
    assert np.array_equal(loaded.transform(telco), fitted.transform(telco))
    assert "pickle" not in path.read_text() and json.loads(path.read_text())["version"] == fitted.version


def test_version_changes_with_the_fitted_state(telco, churn, fitted):
    assert FeatureSet.fit(telco.iloc[2000:], churn).version != fitted.version
    assert FeatureSet.fit(telco.iloc[:5000], churn).version == fitted.version


def test_ids_and_labels_are_not_features(fitted, telco, churn):
    assert "customerID" not in fitted.input_columns and "Churn" not in fitted.input_columns
    labels = fitted.labels(telco)
    assert labels.sum() == 1869 and not any(math.isnan(v) for v in labels)


def test_padded_text_in_a_request_matches_the_stored_category(telco, fitted):
    record = telco.iloc[0].to_dict()
    assert np.array_equal(fitted.transform_record({**record, "Contract": f" {record['Contract']} "}),
                          fitted.transform_record(record))


def test_rows_the_contract_kept_are_taken_as_they_are_and_parse_as_raw_rows_do(telco, fitted, churn):
    """Batch scoring passes the contract's rows with checked=True (their text stripped, blanks missing):
    the same values, and the same features, as stripping them a second time."""
    raw = telco.astype(str).head(200).copy()
    raw.loc[0, "Contract"], raw.loc[1, "gender"], raw.loc[2, "PaymentMethod"] = "  One year ", "   ", None
    kept = apply_contract(raw, churn, to_score=True).kept
    checked, parsed = fitted.frame_values(kept, checked=True), fitted.frame_values(kept)
    assert {c: list(v) for c, v in checked.items()} == {c: list(v) for c, v in parsed.items()}
    assert kept.index[0] == 0 and checked["Contract"][0] == "One year"  # stripped once, by the contract
    assert np.array_equal(fitted.transform_values(checked, len(kept)), fitted.transform(kept))


def test_generated_features_compute_what_their_names_say(telco, engineered):
    matrix = engineered.transform(telco.head(50))
    column = dict(zip(engineered.feature_names, matrix.T))
    tenure, monthly = telco["tenure"].head(50).to_numpy(), telco["MonthlyCharges"].head(50).to_numpy()
    total = telco["TotalCharges"].head(50).fillna(0).to_numpy()
    assert np.allclose(column["log1p(tenure)"], np.log1p(tenure))
    assert np.allclose(column["tenure*MonthlyCharges"], tenure * monthly)
    assert np.allclose(column["tenure^2"], tenure ** 2)
    assert np.allclose(column["TotalCharges/tenure"], np.where(tenure > 0, total / np.maximum(tenure, 1), 0))
    assert "tenure" not in engineered.feature_names and "Contract=Two year" not in engineered.feature_names


def test_target_encoding_is_the_smoothed_rate_and_out_of_fold_on_training_rows(telco, engineered):
    from flowline.features.kinds import TARGET_SMOOTHING

    train = telco.iloc[:5000]
    y = engineered.labels(train)
    prior = y.mean()
    encoding = next(f for f in engineered.features if f.names == ["target(Contract)"])
    month = train["Contract"] == "Month-to-month"
    expected = (y[month].sum() + TARGET_SMOOTHING * prior) / (month.sum() + TARGET_SMOOTHING)
    assert encoding.means["Month-to-month"] == pytest.approx(expected) and encoding.prior == pytest.approx(prior)
    position = engineered.feature_names.index("target(Contract)")
    served, training = engineered.transform(train)[:, position], engineered.transform_training(train)[:, position]
    assert set(np.unique(served)) == {np.float32(v) for v in encoding.means.values()}
    # Out of fold: rows of the same category get their fold's estimate, which never saw their own label.
    assert len(np.unique(training[month.to_numpy()])) > 1 and not np.array_equal(served, training)
    assert np.array_equal(engineered.transform_training(train), engineered.transform_training(train))
    unknown = engineered.transform_record({**telco.iloc[0].to_dict(), "Contract": "Ten year"})
    assert unknown[position] == np.float32(prior)


def test_frequency_encoding_is_the_share_of_training_rows(telco, engineered):
    position = engineered.feature_names.index("frequency(PaymentMethod)")
    shares = telco.iloc[:5000]["PaymentMethod"].value_counts(normalize=True)
    row = engineered.transform(telco.head(1))[0]
    assert row[position] == np.float32(shares[telco.iloc[0]["PaymentMethod"]])
    assert engineered.transform_record({**telco.iloc[0].to_dict(), "PaymentMethod": None})[position] == 0


def test_owners_split_each_feature_over_its_raw_columns(engineered):
    owners = engineered.owners
    assert owners.shape == (engineered.width, len(engineered.input_columns))
    assert np.allclose(owners.sum(axis=1), 1.0)
    product = owners[engineered.feature_names.index("tenure*MonthlyCharges")]
    columns = engineered.input_columns
    assert product[columns.index("tenure")] == product[columns.index("MonthlyCharges")] == 0.5


def test_the_plan_round_trips_and_refits_the_same_feature_set(tmp_path, telco, churn, engineered):
    path = tmp_path / "fs.json"
    engineered.save(path)
    loaded = FeatureSet.load(path)
    assert loaded.version == engineered.version and np.array_equal(loaded.transform(telco), engineered.transform(telco))
    plan = FeaturePlan.from_dict(json.loads(json.dumps(engineered.plan.to_dict())))
    assert FeatureSet.fit(telco.iloc[:5000], churn, plan).version == engineered.version


def test_a_plan_that_does_not_fit_the_use_case_is_refused_naming_why(telco, churn):
    plan = default_plan(telco, churn)
    with pytest.raises(FeatureError, match="column 'Contract': unknown encoding 'hash'"):
        FeatureSet.fit(telco.iloc[:100], churn, plan.with_encoding("Contract", "hash"))
    with pytest.raises(FeatureError, match=r"product of \['tenure', 'Contract'\]: needs numeric .* \['Contract'\]"):
        FeatureSet.fit(telco.iloc[:100], churn, plan.with_generated({"kind": "product", "left": "tenure",
                                                                     "right": "Contract"}))
    with pytest.raises(FeatureError, match="calendar needs a datetime time_column"):
        FeatureSet.fit(telco.iloc[:100], churn, plan.with_generated({"kind": "calendar"}))


@pytest.fixture(scope="module")
def payments():
    from flowline.contract import apply_contract

    use_case = payments_use_case()
    raw = transactions().astype(str)
    return use_case, apply_contract(raw, use_case).kept, raw


def test_entity_windows_count_and_sum_only_earlier_events(payments):
    use_case, frame, _ = payments
    plan = default_plan(frame, use_case).with_generated(
        {"kind": "entity", "outputs": [["recency"], ["count", 3600.0], ["sum", 86400.0, "amount"]]})
    feature_set = FeatureSet.fit(frame, use_case, plan)
    assert feature_set.input_columns == ["amount", "at", "card"]
    matrix = feature_set.transform(frame)
    names = feature_set.feature_names
    seconds = frame["at"].astype("int64").to_numpy() / 1e9
    for i in (0, 5, 17, 100, len(frame) - 1):
        same = (frame["card"] == frame["card"].iloc[i]).to_numpy()
        earlier = same & (seconds < seconds[i])
        hour = earlier & (seconds >= seconds[i] - 3600)
        day = earlier & (seconds >= seconds[i] - 86400)
        assert matrix[i, names.index("count(card, 3600s)")] == hour.sum()
        assert matrix[i, names.index("sum(amount by card, 86400s)")] == pytest.approx(frame["amount"][day].sum(), rel=1e-6)
        recency = seconds[i] - seconds[earlier].max() if earlier.any() else -1
        assert matrix[i, names.index("recency(card)")] == pytest.approx(recency, rel=1e-6)


def test_time_features_of_raw_records_equal_the_batch(payments):
    use_case, frame, raw = payments
    plan = default_plan(frame, use_case).with_generated({"kind": "calendar"}).with_generated(
        {"kind": "entity", "outputs": [["recency"], ["count", 3600.0]]})
    feature_set = FeatureSet.fit(frame.iloc[:800], use_case, plan)
    records = raw.to_dict("records")[:800]  # ISO text, as a request carries it
    # The fitted rows: a batch of rows after training would also see its own earlier rows, one record cannot.
    assert np.array_equal(feature_set.transform(frame.iloc[:800]),
                          np.stack([feature_set.transform_record(r) for r in records]))
    calendar = dict(zip(feature_set.feature_names, feature_set.transform_record(
        {**records[0], "at": "2026-03-15T13:45:00", "card": "never-seen"})))
    assert (calendar["at.month"], calendar["at.day_of_week"], calendar["at.day_of_month"], calendar["at.hour"]) == (
        3, 6, 15, 13)  # a Sunday
    assert calendar["count(card, 3600s)"] == 0 and calendar["recency(card)"] == -1
    with pytest.raises(FeatureError, match="missing column 'card'"):
        feature_set.transform_record({k: v for k, v in records[0].items() if k != "card"})


def test_engineering_finds_the_burst_window_on_validation(payments):
    from flowline.features.engineering import engineer_features
    from flowline.splitting import split_frame

    use_case, frame, _ = payments
    use_case = use_case.model_copy(update={"features": use_case.features.model_copy(update={"search_min_rows": 0})})
    parts = split_frame(frame, use_case)
    shown: list[str] = []
    feature_set, log = engineer_features(parts["train"], parts["valid"], use_case, progress=shown.append)
    entity = [g for g in feature_set.plan.generated if g["kind"] == "entity"]
    assert entity and ["count", 3600.0] in entity[0]["outputs"]
    assert log.score > log.start_score + 0.1  # amount alone says nothing about a burst
    assert any("count" in line and "(kept)" in line for line in shown)
    assert "| time |" in log.markdown()


def test_the_feature_search_scores_plans_by_the_tuning_metric(payments):
    from sklearn.metrics import average_precision_score

    from flowline.features.engineering import PROXY_LINEAR, PROXY_XGBOOST, _Search
    from flowline.models.families import TrainingData, fit_candidate
    from flowline.splitting import split_frame

    use_case, frame, _ = payments
    use_case = use_case.model_copy(update={"tuning": use_case.tuning.model_copy(update={"metric": "auprc"})})
    parts = split_frame(frame, use_case)
    plan = default_plan(parts["train"], use_case)
    search = _Search(parts["train"], parts["valid"], use_case, progress=lambda line: None)
    data = TrainingData.from_splits(FeatureSet.fit(parts["train"], use_case, plan), parts["train"], parts["valid"],
                                    "binary")
    proxies = [fit_candidate("xgboost", PROXY_XGBOOST, data, search.proxy_tuning).model,
               fit_candidate("linear", PROXY_LINEAR["binary"], data, search.proxy_tuning).model]
    assert search.score(plan) == pytest.approx(np.mean([
        average_precision_score(data.y_valid, model.margin(data.x_valid)) for model in proxies]))


@pytest.fixture(scope="module")
def coded(telco, churn) -> FeatureSet:
    """Churn with native categorical splits for the tree families: a category code per categorical column."""
    plan = replace(default_plan(telco, churn).with_encoding("Contract", "target"), native_categorical=True)
    return FeatureSet.fit(telco.iloc[:5000], churn, plan)


def test_category_codes_index_the_vocabulary_and_unknowns_are_missing(telco, coded):
    contract = next(i for i in coded.categorical if i.column == "Contract")
    position = coded.feature_names.index("code(Contract)")
    matrix = coded.transform(telco.head(50))
    expected = [contract.categories.index(v) for v in telco["Contract"].head(50)]
    assert matrix[:, position].tolist() == expected
    odd = {**telco.iloc[0].to_dict(), "Contract": "Three year"}
    assert math.isnan(coded.transform_record(odd)[position])
    np.testing.assert_array_equal(coded.transform_record(telco.iloc[3].to_dict()), matrix[3])


def test_the_layout_gives_trees_the_codes_and_the_others_the_encodings(coded, fitted):
    layout = coded.layout
    names = coded.feature_names
    tree_names = [names[i] for i in layout.trees]
    dense_names = [names[i] for i in layout.dense]
    assert "code(Contract)" in tree_names and "target(Contract)" in dense_names
    assert not any(n.startswith("code(") for n in dense_names)
    assert not any(n.startswith(("Contract", "target(", "gender=")) for n in tree_names)
    assert "tenure" in tree_names and "tenure" in dense_names  # numbers go to both
    assert [t for n, t in zip(tree_names, layout.tree_types) if t == "c"] == ["c"] * len(coded.categorical)
    assert fitted.layout is None  # without codes every family reads every column
    assert fitted.plan.native_categorical is False  # auto, with no column of more than 15 categories
    assert not any(n.startswith("code(") for n in coded.generated_names)


def test_by_default_trees_split_natively_only_on_columns_with_many_categories(tmp_path, telco, churn):
    """auto: codes for the columns target-encoded by default (more than 15 categories), indicators for the rest."""
    many = telco.iloc[:3000].assign(PaymentMethod=[f"method {i % 20}" for i in range(3000)])
    plan = default_plan(many, churn)
    assert churn.features.native_categorical == "auto" and plan.native_categorical == ("PaymentMethod",)
    coded = FeatureSet.fit(many, churn, plan)
    codes = [name for name in coded.feature_names if name.startswith("code(")]
    assert codes == ["code(PaymentMethod)"]
    tree_names = [coded.feature_names[i] for i in coded.layout.trees]
    assert "Contract=Two year" in tree_names and "target(PaymentMethod)" not in tree_names
    coded.save(tmp_path / "fs.json")
    loaded = FeatureSet.load(tmp_path / "fs.json")
    assert loaded.plan.native_categorical == ("PaymentMethod",) and loaded.version == coded.version
    for setting, expected in ((True, len(coded.categorical)), (False, 0)):
        use_case = churn.model_copy(update={"features": churn.features.model_copy(
            update={"native_categorical": setting})})
        names = FeatureSet.fit(many, use_case).feature_names
        assert sum(name.startswith("code(") for name in names) == expected


def test_a_coded_feature_set_round_trips(tmp_path, telco, coded):
    coded.save(tmp_path / "fs.json")
    loaded = FeatureSet.load(tmp_path / "fs.json")
    assert loaded.version == coded.version and loaded.layout == coded.layout
    np.testing.assert_array_equal(loaded.transform(telco.head(20)), coded.transform(telco.head(20)))


def test_fixed_entity_outputs_are_used_as_they_are_with_or_without_the_search(payments):
    """A use case that reuses another's definition gets the owner's outputs as features.entity_outputs."""
    from flowline.features.engineering import engineer_features
    from flowline.splitting import split_frame

    use_case, frame, _ = payments
    parts = split_frame(frame, use_case)
    outputs = [["sum", 604800.0, "amount"], ["recency"]]  # not what a search of this data keeps first
    for search in (False, True):
        fixed = use_case.model_copy(update={"features": use_case.features.model_copy(
            update={"entity_outputs": outputs, "search": search})})
        feature_set, _ = engineer_features(parts["train"], parts["valid"], fixed, progress=lambda line: None)
        entity = [g for g in feature_set.plan.generated if g["kind"] == "entity"]
        assert entity == [{"kind": "entity", "outputs": outputs}]
        assert feature_set.generated_names[-2:] == ["sum(amount by card, 604800s)", "recency(card)"]
