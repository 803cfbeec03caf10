"""A request may carry every column of the use case's contract: those the model does not read (a time column no
kept feature uses today) are checked against their declared type and ignored, so a client's rows do not turn
invalid when a retrained version's feature search reads another set of columns. And a boolean column's values
may come as JSON booleans (v2: BOOL), as a DataFrame's records carry them."""

import pytest
from kserve.protocol.infer_type import InferInput

from flowline.inference_services.request_checks import BadRequest, request_checker
from flowline.inference_services.tensors import tensor_records
from flowline.use_case import UseCase

USE_CASE = UseCase.model_validate({
    "name": "toy", "task": "binary", "data": {"path": "x.csv"}, "time_column": "when", "id_columns": ["id"],
    "label": {"column": "label", "positive": "yes", "values": ["no", "yes"]},
    "columns": {"id": {"type": "string"}, "x": {"type": "number"}, "when": {"type": "datetime"},
                "plan": {"type": "category", "allowed": ["basic", "pro"], "nullable": True},
                "ok": {"type": "category", "allowed": ["False", "True"]}},
    "costs": {"false_negative": 5, "false_positive": 1},
})
CHECKER = request_checker(USE_CASE, ["x"], ())  # the model reads x alone


def test_unread_contract_columns_are_optional_and_checked_against_their_type():
    CHECKER.check_record({"x": 1.5}, "instances[0]")
    CHECKER.check_record({"x": 1.5, "when": "2026-01-05T10:00:00", "plan": None, "id": "c1"}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\].when: 'soon' is not a date"):
        CHECKER.check_record({"x": 1.5, "when": "soon"}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\].plan: 'gold' is not one of"):
        CHECKER.check_record({"x": 1.5, "plan": "gold"}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\]: unknown column 'label'"):
        CHECKER.check_record({"x": 1.5, "label": "yes"}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\]: missing column 'x'"):
        CHECKER.check_record({"when": "2026-01-05"}, "instances[0]")


def test_v2_takes_a_tensor_of_an_unread_contract_column_and_names_the_optional_ones_for_an_unknown_one():
    x = InferInput("x", [2], "FP64", [1.0, 2.0])
    when = InferInput("when", [2], "BYTES", ["2026-01-05", "2026-01-06"])
    assert tensor_records([x, when], CHECKER) == [{"x": 1.0, "when": "2026-01-05"}, {"x": 2.0, "when": "2026-01-06"}]
    with pytest.raises(BadRequest, match=r"unknown input 'label'; expected the raw columns \['x'\] and optionally "
                                         r"\['id', 'when', 'plan', 'ok'\]"):
        tensor_records([x, InferInput("label", [2], "BYTES", ["no", "yes"])], CHECKER)


def test_a_boolean_column_takes_json_booleans_as_its_data_s_true_and_false():
    """Drafted from a Parquet bool column (or a CSV's True/False) as a category of "False" and "True", which
    `flowline score` reads from the same table; a request built with df.to_dict("records") sends true."""
    checker = request_checker(USE_CASE, ["x", "ok"], ())
    checker.check_record({"x": 1.0, "ok": True}, "instances[0]")
    checker.check_record({"x": 1.0, "ok": "False"}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\].ok: 'maybe' is not one of \['False', 'True'\]"):
        checker.check_record({"x": 1.0, "ok": "maybe"}, "instances[0]")
    with pytest.raises(BadRequest, match=r"instances\[0\].plan: 'True' is not one of"):
        checker.check_record({"x": 1.0, "ok": True, "plan": True}, "instances[0]")
    records = tensor_records([InferInput("x", [2], "FP64", [1.0, 2.0]), InferInput("ok", [2], "BOOL", [True, False])],
                             checker)
    assert records == [{"x": 1.0, "ok": True}, {"x": 2.0, "ok": False}]
