"""The batch-scoring step's own work: the day it scores a transaction log at, and its summary for the dashboard.
Scoring itself, through kfp.local and the command line, is tested with real packages in
tests/serving/test_batch_scoring.py."""

from datetime import date, datetime, timezone

import pytest

from flowline.batch import BatchError, BatchSummary
from flowline.components.score.batch_run import score_files, scoring_day, summary_markdown
from flowline.use_case_loader import load_use_case


def test_a_transaction_log_is_scored_as_of_the_day_given_or_the_runs_own():
    clv = load_use_case("clv")
    assert scoring_day(clv, "1997-09-30") == date(1997, 9, 30)
    assert scoring_day(clv, "") == datetime.now(timezone.utc).date()  # a recurring run scores its own day
    with pytest.raises(BatchError, match=r"as_of '30/09/1997': give a date as YYYY-MM-DD"):
        scoring_day(clv, "30/09/1997")


def test_a_row_table_takes_no_as_of_and_is_refused_before_any_package_is_fetched(churn, tmp_path):
    assert scoring_day(churn, "") is None
    with pytest.raises(BatchError, match="use case 'churn' has no transaction log"):
        score_files(churn, "s3://nowhere/package", "unused.csv", "2024-01-01", "",
                    *(str(tmp_path / name) for name in ("scores", "quarantine", "summary")))
    assert list(tmp_path.iterdir()) == []


def test_the_summary_shows_the_counts_and_only_the_columns_out_of_profile():
    summary = BatchSummary("abc123", "churn", "s3://d/customers.csv", "scores", "quarantine",
                           counts={"rows_in": 1206, "rows_scored": 1200, "rows_quarantined": 6},
                           out_of_profile={"tenure": 3, "Contract": 0})
    text = summary_markdown(summary)
    assert "package `abc123`" in text and "`s3://d/customers.csv`" in text
    assert "| rows in | 1,206 |" in text and "| rows quarantined | 6 |" in text
    assert "`tenure` 3" in text and "Contract" not in text
    summary.out_of_profile = {"tenure": 0}
    assert "(scored): none" in summary_markdown(summary)


def test_a_run_above_max_bad_fraction_fails_with_the_counts_and_reasons_a_transaction_logs_too():
    """The step fails as ingest does (the component calls it once the outputs and counts are written): a
    scheduled run that scored nothing passed. The reasons are counted without the cells' values."""
    from collections import Counter

    from flowline.batch import enforce_bad_fraction
    from flowline.contract import ContractError

    churn, clv = load_use_case("churn"), load_use_case("clv")  # max_bad_fraction 5 % and 1 %
    summary = BatchSummary("abc123", "churn", "customers.csv", "scores", "q.parquet",
                           counts={"rows_in": 200, "rows_scored": 189, "rows_quarantined": 11},
                           reasons=Counter({"tenure: a value that is not a number": 3,
                                            "SeniorCitizen: a value that is not a number": 8}))
    with pytest.raises(ContractError) as raised:
        enforce_bad_fraction(summary, churn)
    assert str(raised.value) == (
        "11 of 200 rows (5.5%) were quarantined, above max_bad_fraction 5.0% of use case 'churn'. Reasons: "
        "SeniorCitizen: a value that is not a number (8 rows); tenure: a value that is not a number (3 rows). "
        "The quarantine q.parquet lists every row with its reason.")
    summary.counts = {"rows_in": 200, "rows_scored": 190, "rows_quarantined": 10}
    enforce_bad_fraction(summary, churn)  # 5.0 %: within
    summary.counts = {"rows_in": 0, "rows_scored": 0, "rows_quarantined": 0}
    enforce_bad_fraction(summary, churn)  # a header only: nothing to score, nothing bad
    summary.counts = {"transactions_in": 100, "transactions_quarantined": 2, "customers_scored": 40}
    with pytest.raises(ContractError, match=r"^2 of 100 transactions \(2.0%\) were quarantined, above "
                                            r"max_bad_fraction 1.0% of use case 'clv'"):
        enforce_bad_fraction(summary, clv)
    assert "reasons" not in summary.as_dict()  # not in the audit record
