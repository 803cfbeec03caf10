import json
import math

import numpy as np
import pandas as pd
import pytest

from flowline.components.features.feature_set import FeatureError, FeatureSet, encode_label
from flowline.components.ingest.contract import apply_contract, read_table, resolve_source


@pytest.fixture(scope="module")
def telco(data_home, churn) -> pd.DataFrame:
    return apply_contract(read_table(resolve_source(churn)).frame, churn).kept


@pytest.fixture(scope="module")
def fitted(telco, churn) -> FeatureSet:
    return FeatureSet.fit(telco.iloc[:5000], churn)


def test_batch_row_i_equals_record_i_exactly(telco, fitted):
    batch = fitted.transform(telco)
    records = telco.to_dict("records")
    singles = np.stack([fitted.transform_record(record) for record in records])
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
    labels = encode_label(telco["Churn"], churn)
    assert labels.sum() == 1869 and not any(math.isnan(v) for v in labels)


def test_padded_text_in_a_request_matches_the_stored_category(telco, fitted):
    record = telco.iloc[0].to_dict()
    assert np.array_equal(fitted.transform_record({**record, "Contract": f" {record['Contract']} "}),
                          fitted.transform_record(record))
