"""The scale bench's data and report (tests/benchmark/scale_bench.py): Telco at k times its rows, a churn use case
that reads it, and the step-time table. The bench itself runs in `make bench`."""

from pathlib import Path

import scale_bench

from flowline.contract import apply_contract, read_use_case_table
from flowline.use_case_loader import load_use_case


def test_each_factor_is_churn_reading_telco_at_that_many_rows_and_every_row_keeps_the_contract(data_home, tmp_path):
    churn = load_use_case("churn")
    for factor, name in ((1, "telco-x1.csv"), (2, "telco-x2.parquet")):
        use_case = load_use_case(str(scale_bench.write_case(factor, tmp_path)))
        assert Path(use_case.data.path) == (tmp_path / name).resolve()
        assert use_case.model_copy(update={"data": churn.data}) == churn
        result = apply_contract(read_use_case_table(use_case).frame, use_case)
        assert len(result.kept) == factor * 7043 and result.quarantined.empty
        assert result.kept["customerID"].is_unique


def test_the_table_has_a_row_per_step_and_a_column_per_factor():
    results = [{"factor": 1, "rows": 7043, "wall_seconds": 50.0, "step_seconds": {"ingest": 1.0, "train": 9.5}},
               {"factor": 10, "rows": 70430, "wall_seconds": 300.04, "step_seconds": {"ingest": 4.0, "train": 99.0}}]
    assert scale_bench.markdown(results).splitlines() == [
        "| step | x1 (7,043 rows) | x10 (70,430 rows) |", "|---|---|---|", "| ingest | 1.0 | 4.0 |",
        "| train | 9.5 | 99.0 |", "| **run (kfp.local included)** | **50.0** | **300.0** |"]
