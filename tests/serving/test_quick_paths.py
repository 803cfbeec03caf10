"""The serving hot path's quick paths agree with the full ones they stand in front of: a value the quick test
passes is one the full per-value check accepts, a tensor's quickly converted values are the ones numpy gives,
and an answer's JSON tensors hold what KServe's encoder would put in them."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kserve.protocol.infer_type import InferOutput
from kserve.utils.numpy_codec import to_np_dtype

from flowline.inference_services.model import answer_tensor
from flowline.inference_services.request_checks import FLOAT32_MAX, BadRequest, RecordChecker, plainly_valid
from flowline.inference_services.tensors import plain_tensor_values
from flowline.use_case import UseCase

USE_CASE = UseCase.model_validate({
    "name": "orders", "task": "regression", "data": {"path": "x.csv"}, "label": {"column": "spend"},
    "time_column": "at", "columns": {
        "count": {"type": "integer", "min": 0, "max": 100},
        "any_integer": {"type": "integer"},
        "amount": {"type": "number", "min": -1.5, "max": 1e6},
        "ratio": {"type": "number", "nullable": True},
        "plan": {"type": "category", "allowed": ["Yes", "No", " padded ", "No phone service"]},
        "note": {"type": "string"},
        "at": {"type": "datetime"},
    }})
SPECS = USE_CASE.columns
CHECKER = RecordChecker(USE_CASE, list(SPECS))
EDGES = [0, 1, -1, 100, 101, 2.5, 100.0, 100.5, -1.5, -1.6, 1e6, 1e6 + 1, FLOAT32_MAX, -FLOAT32_MAX, FLOAT32_MAX * 2,
         float("inf"), float("-inf"), float("nan"), 2**70, -(2**70), True, False, None, "", " ", "Yes", " Yes",
         "Yes ", "padded", " padded ", "No phone service", "3", "2026-01-02", [], {}, b"Yes"]
VALUES = st.one_of(st.sampled_from(EDGES), st.integers(), st.floats(), st.text(max_size=8),
                   st.sampled_from(["Yes", "No"]).map(lambda s: s + " "))


def _full_check_accepts(name: str, value) -> bool:
    try:
        CHECKER.check_value(name, SPECS[name], value, "instances[0]")
    except BadRequest:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(SPECS)), value=VALUES)
def test_a_value_the_quick_test_passes_is_one_the_full_check_accepts(name, value):
    allowed = frozenset(SPECS[name].allowed) if SPECS[name].allowed else None
    if plainly_valid(SPECS[name], allowed)(value):
        assert _full_check_accepts(name, value), (name, value)


def test_every_edge_value_the_quick_test_passes_is_accepted_and_common_ones_skip_the_full_check():
    for name, spec in SPECS.items():
        plain = plainly_valid(spec, frozenset(spec.allowed) if spec.allowed else None)
        for value in EDGES:
            if plain(value):
                assert _full_check_accepts(name, value), (name, value)
    common = {"count": [0, 7, 7.0, 100], "any_integer": [-(2**40), 3], "amount": [-1.5, 0, 2.5, 1e6],
              "ratio": [0.25, 3], "plan": ["Yes", "No phone service"], "note": ["hello"]}
    for name, values in common.items():
        spec = SPECS[name]
        plain = plainly_valid(spec, frozenset(spec.allowed) if spec.allowed else None)
        assert all(plain(value) for value in values), name
    # what the full check must see: each is refused or needs its rules (a padded category, text numbers, NaN)
    refused_or_full = {"count": [7.5, 101, True, "7", float("nan")], "amount": [float("inf"), 1e6 + 1],
                       "plan": [" padded ", "Yes "], "note": [" "], "at": ["2026-01-02"]}
    for name, values in refused_or_full.items():
        spec = SPECS[name]
        plain = plainly_valid(spec, frozenset(spec.allowed) if spec.allowed else None)
        assert not any(plain(value) for value in values), name


@settings(max_examples=400, deadline=None)
@given(datatype=st.sampled_from(["BYTES", "FP64", "INT64", "FP32", "INT32"]),
       data=st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=4), st.booleans(), st.none(),
                               st.sampled_from([2.0**63, -(2.0**63), 2**63, 2**63 - 1, -(2**63), 1e300])),
                     min_size=1, max_size=4))
def test_plain_tensor_values_are_what_numpy_gives(datatype, data):
    """The quick conversion of a JSON tensor's data list equals KServe's as_numpy().tolist() whenever it applies."""
    plain = plain_tensor_values(datatype, data, len(data))
    if plain is None:
        return
    expected = np.array(data, dtype=to_np_dtype(datatype)).tolist()
    assert [type(v) for v in plain] == [type(v) for v in expected]
    assert all(a == b or (a != a and b != b) for a, b in zip(plain, expected, strict=True))  # NaN is NaN


def test_common_tensors_take_the_quick_conversion():
    assert plain_tensor_values("BYTES", ["Yes", "No"], 2) == ["Yes", "No"]
    assert plain_tensor_values("FP64", [29.85], 1) == [29.85]
    assert plain_tensor_values("INT64", [3, -2], 2) == [3, -2]
    assert plain_tensor_values("INT64", [1.0], 1) == [1] and type(plain_tensor_values("INT64", [1.0], 1)[0]) is int
    for datatype, data in [("FP32", [29.85]), ("INT64", [1.5]), ("FP64", [1]), ("INT64", [2**63]), ("BYTES", [b"x"]),
                           ("FP64", [[1.0]]), ("FP64", None)]:
        assert plain_tensor_values(datatype, data, 1) is None, (datatype, data)
    assert plain_tensor_values("FP64", [1.0, 2.0], 1) is None  # the shape says one row


def test_answer_tensors_hold_what_kserves_encoder_would_put_in_them():
    arrays = {"FP32": np.array([0.1, 1e-8, 3.4e38, 0.0], dtype=np.float32),
              "BYTES": np.array(["Yes", "No", "é", b"bytes"], dtype=object),
              "INT64": np.array([1, -(2**62), 0, 7], dtype=np.int64)}
    for datatype, values in arrays.items():
        for binary in (False, True):
            expected = InferOutput(name="out", shape=[len(values)], datatype=datatype)
            expected.set_data_from_numpy(values, binary_data=binary)
            assert answer_tensor("out", datatype, values, binary).to_dict() == expected.to_dict(), (datatype, binary)
    json_data = answer_tensor("out", "FP32", arrays["FP32"], False).data
    assert [type(v) for v in json_data] == [float] * 4
