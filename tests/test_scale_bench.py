"""The scale bench's data and report (tests/benchmark/scale_bench.py): Telco resampled, a churn use case that
reads it, and the step-time table. The bench itself runs in `make bench`."""

import importlib.util
from pathlib import Path

import pandas as pd

from flowline.contract import apply_contract, read_use_case_table
from flowline.use_case import load_use_case

spec = importlib.util.spec_from_file_location("scale_bench", Path(__file__).parent / "benchmark" / "scale_bench.py")
scale_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale_bench)


def test_resampling_draws_whole_rows_with_unique_ids():
    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": ["1", "2", "3"]})
    assert scale_bench.resampled(frame, 1, "id") is frame
    rows = scale_bench.resampled(frame, 4, "id")
    assert len(rows) == 12 and rows["id"].is_unique
    original = rows["id"].str.rsplit("-", n=1).str[0]
    assert (rows["x"] == original.map(dict(zip(frame["id"], frame["x"])))).all()  # every row a copy of one
    assert rows.equals(scale_bench.resampled(frame, 4, "id"))  # seeded


def test_the_resampled_case_is_churn_reading_its_csv_and_every_row_keeps_the_contract(data_home, tmp_path):
    path = scale_bench.write_case(2, tmp_path)
    use_case = load_use_case(str(path))
    churn = load_use_case("churn")
    assert Path(use_case.data.path) == (tmp_path / "telco-x2.csv").resolve()
    assert use_case.model_copy(update={"data": churn.data}) == churn
    result = apply_contract(read_use_case_table(use_case).frame, use_case)
    assert len(result.kept) == 2 * 7043 and result.quarantined.empty


def test_the_table_has_a_row_per_step_and_a_column_per_factor():
    results = [{"factor": 1, "rows": 7043, "wall_seconds": 50.0, "step_seconds": {"ingest": 1.0, "train": 9.5}},
               {"factor": 10, "rows": 70430, "wall_seconds": 300.04, "step_seconds": {"ingest": 4.0, "train": 99.0}}]
    assert scale_bench.markdown(results).splitlines() == [
        "| step | x1 (7,043 rows) | x10 (70,430 rows) |", "|---|---|---|", "| ingest | 1.0 | 4.0 |",
        "| train | 9.5 | 99.0 |", "| **run (kfp.local included)** | **50.0** | **300.0** |"]
