"""The fingerprints of the rows a model was fitted on: by ids where the use case has them, else by content."""

import numpy as np
import pandas as pd
import pytest

from flowline import fitted_rows


@pytest.fixture
def rows() -> pd.DataFrame:
    return pd.DataFrame({"id": ["a", "b", "c", "d"], "age": [30, 40, 50, 60], "income": [1.0, 2.0, None, 4.0],
                         "plan": ["basic", "pro", "basic", "pro"], "label": ["no", "yes", "no", "yes"]})


def test_rows_with_ids_are_known_by_their_ids(toy_use_case, rows):
    fitted = fitted_rows.fitted_on([rows.iloc[:2], rows.iloc[2:3]], toy_use_case)
    assert len(fitted) == 3 and np.all(np.diff(fitted.astype(np.uint64)) > 0)  # sorted, unique
    later = rows.iloc[::-1].assign(income=[9.0, 9.0, 9.0, 9.0])  # new values and order: the same customers
    assert fitted_rows.unseen(later, toy_use_case, fitted).tolist() == [True, False, False, False]


def test_rows_without_ids_are_known_by_their_features_and_label(toy_use_case, rows):
    by_content = toy_use_case.model_copy(update={"id_columns": []})
    fitted = fitted_rows.fitted_on([rows], by_content)
    changed = rows.assign(income=[1.0, 2.0, 3.5, 4.0], label=["no", "no", "no", "yes"])
    assert fitted_rows.unseen(changed, by_content, fitted).tolist() == [False, True, True, False]


def test_a_frame_without_a_fingerprinted_column_is_named(toy_use_case, rows):
    with pytest.raises(KeyError, match="no column 'id'"):
        fitted_rows.fingerprints(rows.drop(columns="id"), toy_use_case)


def test_saved_fingerprints_load_back_and_a_pickle_is_never_read(tmp_path, toy_use_case, rows):
    fitted = fitted_rows.fitted_on([rows], toy_use_case)
    fitted_rows.save(tmp_path / "rows.npy", fitted)
    assert np.array_equal(fitted_rows.load(tmp_path / "rows.npy"), fitted)
    np.save(tmp_path / "object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        fitted_rows.load(tmp_path / "object.npy")


def test_rows_of_an_entity_at_a_time_are_known_by_both():
    """CLV's rows are each customer at a cut-off: by the id alone every test customer (a later cut-off) counted as
    seen, and no retrain was ever compared with its champion (the review of this stop)."""
    from flowline.use_case_loader import parse_use_case

    use_case = parse_use_case({
        "name": "snapshots", "task": "regression", "data": {"path": "unused.csv"}, "label": {"column": "spend"},
        "id_columns": ["customer"], "time_column": "cutoff", "split": {"method": "latest"},
        "columns": {"customer": {"type": "string"}, "cutoff": {"type": "datetime"}, "visits": {"type": "number"}}})
    early = pd.DataFrame({"customer": ["a", "b"], "cutoff": pd.to_datetime(["2024-01-01"] * 2), "visits": [1.0, 2.0],
                          "spend": [3.0, 4.0]})
    fitted = fitted_rows.fitted_on([early], use_case)
    later = early.assign(cutoff=pd.to_datetime(["2024-04-01", "2024-01-01"]))
    assert fitted_rows.unseen(later, use_case, fitted).tolist() == [True, False]



def _typed(use_case, raw: pd.DataFrame) -> pd.DataFrame:
    """The rows as ingest types them under `use_case`'s contract."""
    from flowline.contract import apply_contract

    return apply_contract(raw, use_case).kept


def _retyped(use_case, column: str, **spec):
    """`use_case` with `column` declared otherwise."""
    from flowline.use_case import ColumnSpec

    return use_case.model_copy(update={"columns": {**use_case.columns, column: ColumnSpec(**spec)}})


@pytest.mark.parametrize("fitted_type, later_type", [("integer", "string"), ("string", "integer")])
def test_rows_are_known_when_a_later_contract_types_the_ids_otherwise(toy_use_case, fitted_type, later_type):
    """An id drafted as a number and later declared text (or back) hashed apart: 7.0 is not "7", so every one of
    the champion's rows read as unseen and it was compared on them all again."""
    raw = pd.DataFrame({"id": ["7", "12", "30", "41"], "age": ["30", "40", "50", "60"],
                        "income": ["1.5", "2", "", "4"], "plan": ["basic", "pro", "basic", "pro"],
                        "label": ["no", "yes", "no", "yes"]})
    champion = _retyped(toy_use_case, "id", type=fitted_type)
    later = _retyped(toy_use_case, "id", type=later_type)
    fitted = fitted_rows.fitted_on([_typed(champion, raw.iloc[:2])], champion)
    test = _typed(later, raw)
    assert test["id"].dtype != _typed(champion, raw)["id"].dtype  # the two contracts do type the ids apart
    assert fitted_rows.unseen(test, champion, fitted).tolist() == [False, False, True, True]


def test_rows_are_known_by_content_when_a_later_contract_types_a_feature_otherwise(toy_use_case):
    """Without ids a row is its features and label: `age` read as a number by the champion's contract and as a
    category by the next, and `income` with decimal commas by the champion's, are the same row."""
    by_content = toy_use_case.model_copy(update={"id_columns": []})
    champion = _retyped(by_content, "income", type="number", nullable=True, decimal=",")
    later = _retyped(by_content, "age", type="category")
    raw = pd.DataFrame({"id": ["a", "b", "c"], "age": ["30", "40", "50"], "income": ["1,5", "2", ""],
                        "plan": ["basic", "pro", "basic"], "label": ["no", "yes", "no"]})
    fitted = fitted_rows.fitted_on([_typed(champion, raw.iloc[:2])], champion)
    test = _typed(later, raw.assign(income=["1.5", "2", ""]))  # the next extract writes decimal points
    assert test["age"].dtype == object
    assert fitted_rows.unseen(test, champion, fitted).tolist() == [False, False, True]
    assert fitted_rows.unseen(test.assign(age=["31", "40", "50"]), champion, fitted).tolist() == [True, False, True]
