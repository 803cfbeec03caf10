import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from flowline.contract import apply_contract, read_table, resolve_source
from flowline.splitting import SplitError, split_frame


@pytest.fixture(scope="module")
def telco(data_home, churn) -> pd.DataFrame:
    return apply_contract(read_table(resolve_source(churn)).frame, churn).kept


def test_stratified_split_is_the_fixed_protocol(telco, churn):
    parts = split_frame(telco, churn)
    y = telco["Churn"]
    rest, test = train_test_split(telco, test_size=0.2, stratify=y, random_state=42)
    train, valid = train_test_split(rest, test_size=0.2, stratify=rest["Churn"], random_state=42)
    assert list(parts["test"].index) == list(test.index)
    assert list(parts["valid"].index) == list(valid.index)
    assert list(parts["train"].index) == list(train.index)
    assert {k: len(v) for k, v in parts.items()} == {"train": 4507, "valid": 1127, "test": 1409}


def test_parts_are_disjoint_complete_and_stratified(telco, churn):
    parts = split_frame(telco, churn)
    indices = [set(part.index) for part in parts.values()]
    assert sum(map(len, indices)) == len(telco) and set().union(*indices) == set(telco.index)
    rate = (telco["Churn"] == "Yes").mean()
    for part in parts.values():
        assert abs((part["Churn"] == "Yes").mean() - rate) < 0.01


def test_time_split_puts_the_latest_rows_in_test(toy_use_case):
    use_case = toy_use_case.model_copy(
        update={"time_column": "age", "split": toy_use_case.split.model_copy(update={"method": "time"})}
    )
    frame = pd.DataFrame({"age": np.random.default_rng(0).permutation(100), "label": ["no", "yes"] * 50})
    parts = split_frame(frame, use_case)
    assert {k: len(v) for k, v in parts.items()} == {"train": 64, "valid": 16, "test": 20}
    assert parts["train"]["age"].max() < parts["valid"]["age"].min()
    assert parts["valid"]["age"].max() < parts["test"]["age"].min()


def binary_rows(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"age": range(len(labels)), "label": labels})


def test_a_label_with_too_few_rows_of_a_class_is_refused_naming_the_label_and_counts(toy_use_case):
    with pytest.raises(SplitError, match=r"label 'label' needs both classes in train, valid and test, so at least 3 "
                                         r"rows of each; the data has \{'no': 98, 'yes': 2\}"):
        split_frame(binary_rows(["no"] * 98 + ["yes"] * 2), toy_use_case)
    with pytest.raises(SplitError, match=r"the data has \{'no': 50, 'yes': 0\}"):
        split_frame(binary_rows(["no"] * 50), toy_use_case)


def test_a_part_left_with_one_class_is_refused_naming_it(toy_use_case):
    """A time split puts the latest rows in test: here every positive is older."""
    use_case = toy_use_case.model_copy(
        update={"time_column": "age", "split": toy_use_case.split.model_copy(update={"method": "time"})})
    with pytest.raises(SplitError, match=r"label 'label' needs both classes in train, valid and test, but valid, test "
                                         r"have only one\. Rows per label value: train \{'no': 54, 'yes': 10\}; "
                                         r"valid \{'no': 16, 'yes': 0\}; test \{'no': 20, 'yes': 0\}"):
        split_frame(binary_rows(["yes"] * 10 + ["no"] * 90), use_case)


def test_a_class_too_rare_for_the_folds_is_refused_in_train_and_valid_or_in_their_sample(toy_use_case):
    """4 positives in train + valid, or 40 of which cross-fitting's stratified sample keeps about 4: a fold had no
    positive, scored NaN, and the run died on an infinite trial score with a protobuf traceback (the data audit)."""
    with pytest.raises(SplitError, match=r"train \+ valid hold \{'no': \d+, 'yes': 4\}, and cross-validation in 5 "
                                         r"folds needs at least 5 rows of each class there"):
        split_frame(binary_rows(["no"] * 995 + ["yes"] * 5), toy_use_case)
    sampled = toy_use_case.model_copy(update={"tuning": toy_use_case.tuning.model_copy(update={"search_rows": 100})})
    rows = binary_rows(["no"] * 1_440 + ["yes"] * 60)
    with pytest.raises(SplitError, match=r"cross-fitting takes a stratified 120 of their 1,200 rows \(tuning.search_rows "
                                         r"100\), about 4 of the rarer class: cross-validation in 6 folds"):
        split_frame(rows, sampled.model_copy(update={"ensemble": sampled.ensemble.model_copy(update={"folds": 6})}))
    assert set(split_frame(rows, sampled)) == {"train", "valid", "test"}  # about 5 in 125: enough for 5 folds
