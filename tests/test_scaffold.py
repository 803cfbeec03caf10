"""flowline init drafts a use case from data that runs as it is; flowline validate checks one against its data."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flowline import storage
from flowline.contract import apply_contract, read_use_case_table
from flowline.package.format import verify
from flowline.datasets import REGISTRY
from flowline.pipelines.cli import EXIT_ERROR, EXIT_GATE_FAILED, main
from flowline.pipelines.scaffold import ScaffoldError, looks_sensitive, scaffold, sniff_separator
from flowline.use_case_loader import load_use_case, parse_use_case

# Every registered dataset with the label a person would choose. The CDNOW transaction logs are left
# out: a transaction log needs a `transactions:` section (entity, amount, cut-offs) init cannot guess.
LABELS = {
    "telco_customer_churn": "Churn", "creditcard_fraud_sample": "Class", "vehicle_insurance_fraud": "FraudFound_P",
    "adult": "income", "bank_marketing": "y", "german_credit": "class", "spambase": "spam",
    "online_shoppers": "Revenue", "hr_attrition_ibm": "Attrition",
}
IDS = {"telco_customer_churn": ["customerID"], "vehicle_insurance_fraud": ["PolicyNumber"],
       "hr_attrition_ibm": ["EmployeeNumber"]}  # unique per row and named like an id, numbers or not
TRANSACTION_LOGS = {"cdnow_master", "cdnow_sample"}

SMALL = """account_id,signup,plan,spend,visits,note,outcome
a1,2024-01-03,basic,10.5,3,hello there,no
a2,2024-01-05,pro,,4,a note,yes
a3,2024-02-01,basic,7.25,,third one,no
a4,2024-02-11,pro,3.0,1,fourth,no
"""


def test_every_registered_dataset_but_the_transaction_logs_has_a_label_here():
    assert set(LABELS) == set(REGISTRY) - TRANSACTION_LOGS


@pytest.mark.parametrize("name", sorted(LABELS))
def test_init_drafts_a_use_case_that_validates_and_keeps_the_rows(data_home: Path, tmp_path: Path, name: str,
                                                                  capsys):
    target = tmp_path / f"{name}.yaml"
    assert main(["init", str(data_home / REGISTRY[name].filename), "--label", LABELS[name], "-o", str(target)]) == 0
    assert main(["validate", str(target)]) == 0, capsys.readouterr().err
    use_case = load_use_case(target)
    assert use_case.label.column == LABELS[name] and use_case.id_columns == IDS.get(name, [])
    raw = read_use_case_table(use_case)
    assert set(raw.frame.columns) == {*use_case.columns, use_case.label.column}  # nothing left undeclared
    result = apply_contract(raw.frame, use_case, raw.malformed)
    assert len(result.kept) >= 0.99 * result.rows_in
    assert use_case.task == "binary" and set(use_case.label.values) == set(raw.frame[LABELS[name]].str.strip())


def test_init_drafts_the_model_cards_fields_and_lists_columns_named_like_protected_characteristics(
        data_home: Path, tmp_path: Path, capsys):
    """A drafted use case left the model card's description and intended use empty with no word, and named no
    column fairness could be measured on; German credit holds age and personal_status (sex and marital status)."""
    target = tmp_path / "german.yaml"
    assert main(["init", str(data_home / REGISTRY["german_credit"].filename), "--label", "class", "-o",
                 str(target)]) == 0
    text = target.read_text()
    assert "\n# sensitive_attributes: [personal_status, age]  # review:" in text
    use_case = load_use_case(target)
    assert (use_case.intended_use, use_case.limitations, use_case.sensitive_attributes) == ("", [], [])
    capsys.readouterr()
    assert main(["validate", str(target)]) == 0
    shown = capsys.readouterr().out
    assert "note: intended_use is empty: the model card will say it is not stated" in shown
    assert "note: description is empty" in shown
    chosen = tmp_path / "chosen.yaml"  # the line, uncommented, is a use case's; a description stands in for the use
    chosen.write_text(text.replace("\n# sensitive_attributes:", "\nsensitive_attributes:").replace(
        'description: ""', 'description: "Credit risk of loan applicants"'))
    assert load_use_case(chosen).sensitive_attributes == ["personal_status", "age"]
    assert main(["validate", str(chosen)]) == 0
    assert "note: intended_use is empty: the model card will show the description in its place" in \
        capsys.readouterr().out
    # By words of the name: not PageValues' "age", not usage or mileage.
    assert [looks_sensitive(n) for n in ("PageValues", "usage", "SeniorCitizen", "native-country", "Sex")] == \
        [False, False, True, True, True]


def test_init_infers_types_blanks_ids_dates_and_the_label(write_csv):
    document = yaml.safe_load(scaffold(str(write_csv(SMALL))))
    columns = document["columns"]
    assert document["label"] == {"column": "outcome", "positive": "yes", "values": ["no", "yes"]}
    assert document["id_columns"] == ["account_id"] and document["time_column"] == "signup"
    assert columns["signup"] == {"type": "datetime"}
    assert columns["plan"] == {"type": "category", "allowed": ["basic", "pro"]}
    assert columns["spend"] == {"type": "number", "nullable": True, "impute": "median"}
    assert columns["visits"] == {"type": "integer", "nullable": True, "impute": "median"}
    assert columns["note"]["type"] == "category"
    assert parse_use_case(document).task == "binary"


def test_a_quarantines_bookkeeping_columns_are_left_out_of_the_draft_and_refused_in_a_contract(write_csv):
    """A quarantine fed back in (its rows fixed) carries _source_row and _quarantine_reason: init leaves them out,
    its rows ingest as any others, and a contract that declares one is refused in one line."""
    source = write_csv("_source_row,x,plan,outcome,_quarantine_reason\n" +
                       "".join(f"{n},{n % 7}.5,{'ab'[n % 2]},{'no' if n % 3 else 'yes'},fixed\n" for n in range(60)))
    document = yaml.safe_load(scaffold(str(source)))
    assert set(document["columns"]) == {"x", "plan"}
    use_case = parse_use_case(document)
    result = apply_contract(read_use_case_table(use_case).frame, use_case)
    assert len(result.kept) == 60 and len(result.quarantined) == 0
    with pytest.raises(ValueError, match="column '_source_row': a name flowline keeps for its quarantines"):
        parse_use_case({**document, "columns": {**document["columns"], "_source_row": {"type": "integer"}}})


def test_review_marks_the_guesses_and_defaults(write_csv):
    text = scaffold(str(write_csv(SMALL)))
    reviewed = [line.split(":")[0].strip() for line in text.splitlines() if "# review" in line and ":" in line]
    assert {"task", "column", "positive", "false_negative", "false_positive", "time_column"} <= set(reviewed)


def test_a_numeric_label_of_many_values_is_regression_and_a_rarer_value_is_positive(write_csv):
    numbers = "x,amount\n" + "".join(f"{i % 3},{i * 1.5}\n" for i in range(30))
    document = yaml.safe_load(scaffold(str(write_csv(numbers)), "amount"))
    assert document["task"] == "regression" and "positive" not in document["label"] and "r2" in document["gates"]
    assert parse_use_case(document).task == "regression"
    coded = "x,class\n" + "".join(f"{i},{2 if i % 4 == 0 else 1}\n" for i in range(20))
    assert yaml.safe_load(scaffold(str(write_csv(coded))))["label"]["positive"] == "2"


def test_a_few_typos_leave_a_numeric_column_numeric_and_are_named_for_review(write_csv, tmp_path: Path, capsys):
    rows = [f"{i},{100 + i},{('no', 'yes')[i % 2]}" for i in range(300)]
    rows[7], rows[80] = "7,abc,no", "80,1e999,no"  # 2 of 300 cells: typos, not a text column
    path = write_csv("visits,amount,outcome\n" + "\n".join(rows) + "\n")
    text = scaffold(str(path))
    assert yaml.safe_load(text)["columns"]["amount"] == {"type": "integer"}
    line = next(line for line in text.splitlines() if line.strip().startswith("amount:"))
    assert "# review: 2 cell(s) are not numbers ('abc', '1e999'): their rows are quarantined" in line
    target = tmp_path / "typos.yaml"
    target.write_text(text)
    assert main(["validate", str(target)]) == 0
    assert "2 of 300 rows (0.7%) break the contract" in capsys.readouterr().out
    many = [f"{i},{('x' if i % 10 == 0 else 100 + i)},{('no', 'yes')[i % 2]}" for i in range(300)]  # 10 % text
    assert yaml.safe_load(scaffold(str(write_csv("visits,amount,outcome\n" + "\n".join(many) + "\n", "many.csv"))
                                   ))["columns"]["amount"]["type"] == "string"


def test_a_label_of_a_few_whole_numbers_is_regression_asking_whether_they_are_classes(write_csv):
    text = scaffold(str(write_csv("x,class\n" + "".join(f"{i},{1 + i % 3}\n" for i in range(30)))))
    assert yaml.safe_load(text)["task"] == "regression"
    assert ("# review: regression: only 3 distinct whole numbers (1, 2, 3); if they are classes, not amounts, map "
            "them to two values") in text


def test_a_label_init_cannot_guess_is_an_error_that_says_so(write_csv, capsys):
    path = write_csv("x,colour\n1,red\n2,green\n3,blue\n")
    with pytest.raises(ScaffoldError, match=r"cannot guess the task from label column 'colour': it has 3 value"):
        scaffold(str(path))
    for text, others in [("outcome\nyes\nno\n", "[]"), ("customer_id,outcome\nc1,yes\nc2,no\n", "['customer_id']")]:
        with pytest.raises(ScaffoldError, match=rf"has no column to learn 'outcome' from: its other columns "
                                                rf"{re.escape(others)} are ids"):
            scaffold(str(write_csv(text, "bare.csv")))
    assert main(["init", str(path), "--label", "nope"]) == EXIT_ERROR
    assert "label 'nope' is not a column" in capsys.readouterr().err
    # From a notebook: a Path is a path; a DataFrame is no source a use case could name.
    assert scaffold(path, "x") == scaffold(str(path), "x")
    with pytest.raises(TypeError, match="source: a path, http.s. URL or s3:// URI of the table, got DataFrame"):
        scaffold(pd.read_csv(path), "colour")


@pytest.mark.parametrize("separator", [";", "\t", "|"])
def test_the_separator_is_detected(write_csv, separator: str):
    text = SMALL.replace(",", separator)
    assert sniff_separator(text) == separator
    document = yaml.safe_load(scaffold(str(write_csv(text))))
    assert document["data"]["separator"] == separator and len(document["columns"]) == 6


def test_latin1_files_get_their_encoding(tmp_path: Path):
    path = tmp_path / "latin.csv"
    path.write_bytes("city,label\nMünchen,yes\nKöln,no\n".encode("latin-1"))
    document = yaml.safe_load(scaffold(str(path)))
    assert document["data"]["encoding"] == "latin-1"
    assert document["columns"]["city"]["allowed"] == ["Köln", "München"]


def test_a_latin1_byte_past_the_first_megabyte_and_utf16_text_get_their_encoding(tmp_path: Path, capsys):
    late = tmp_path / "late.csv"  # 1.2 MB of ASCII, then one latin-1 byte in the last row
    late.write_bytes(("city,label\n" + "Bonn,yes\nKiel,no\n" * 70_000 + "Köln,no\n").encode("latin-1"))
    assert yaml.safe_load(scaffold(str(late)))["data"]["encoding"] == "latin-1"
    excel = tmp_path / "excel.txt"  # Excel's "Unicode Text": utf-16 with its byte-order mark, tab-separated
    excel.write_bytes("city\tlabel\nMünchen\tyes\nKöln\tno\n".encode("utf-16"))
    document = yaml.safe_load(scaffold(str(excel)))
    assert document["data"]["encoding"] == "utf-16" and document["data"]["separator"] == "\t"
    assert document["columns"]["city"]["allowed"] == ["Köln", "München"]
    target = tmp_path / "excel.yaml"
    target.write_text(yaml.safe_dump({**document, "data": {**document["data"], "encoding": "utf-8"}}))
    assert main(["validate", str(target)]) == EXIT_ERROR  # told the encoding, not called a binary file
    assert "is utf-16 text (it starts with utf-16's byte-order mark): set data.encoding: utf-16" in \
        capsys.readouterr().err


def test_parquet_and_http_sources_are_drafted(write_csv, tmp_path: Path):
    frame = pd.read_csv(write_csv(SMALL), dtype=str, keep_default_na=False)
    frame.to_parquet(tmp_path / "small.parquet")
    assert yaml.safe_load(scaffold(str(tmp_path / "small.parquet")))["label"]["column"] == "outcome"
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/data.csv"
        document = yaml.safe_load(scaffold(url))
    finally:
        server.shutdown()
    assert document["data"]["path"] == url and document["id_columns"] == ["account_id"]


def test_validate_reports_every_problem_at_once(write_csv, tmp_path: Path, capsys):
    data = write_csv(SMALL + "a5,2024-03-01,gold,x,2,more,no\na6,2024-03-02,gold,1,2,again,no\n")
    document = yaml.safe_load(scaffold(str(write_csv(SMALL, "first.csv"))))
    document["data"]["path"] = str(data)
    document["columns"]["region"] = {"type": "category"}
    document["id_columns"] = ["account_id", "region"]
    del document["columns"]["note"]
    document["label"]["values"] = ["no", "yes", "maybe"]
    document["label"]["positive"] = "yes"
    document["undeclared"] = "error"
    target = tmp_path / "broken.yaml"
    target.write_text(yaml.safe_dump(document))
    assert main(["validate", str(target)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "the data has no column(s) ['region']" in err
    assert "column(s) ['note'] are in the data but not declared" in err
    assert "value(s) ['maybe'] of label.values never occur" in err
    assert "2 of 6 rows (33.3%) break the contract (max_bad_fraction 5.0%): column plan 2, column spend 1" in err
    assert "4 problem(s)" in err


def test_a_misnamed_label_column_hides_none_of_the_rows_problems(write_csv, tmp_path: Path, capsys):
    """With `label.column: klass` validate said only that the column is missing, and the rows that break the
    contract appeared once it was fixed (the README audit)."""
    data = write_csv(SMALL + "a5,2024-03-01,gold,x,2,more,no\n")
    document = yaml.safe_load(scaffold(str(write_csv(SMALL, "first.csv"))))  # drafted before the bad row came
    document["data"]["path"] = str(data)
    document["label"]["column"] = "outcme"
    target = tmp_path / "misnamed.yaml"
    target.write_text(yaml.safe_dump(document))
    assert main(["validate", str(target)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "the data has no column(s) ['outcme']" in err
    assert "1 of 5 rows (20.0%) break the contract (max_bad_fraction 5.0%): column note 1, column plan 1, column spend 1" \
        in err


@pytest.mark.parametrize("name", ["churn", "fraud", "fraud-claims"])
def test_the_built_in_use_cases_fit_their_data(data_home: Path, name: str, capsys):
    assert main(["validate", f"pipelines/use_cases/{name}.yaml"]) == 0, capsys.readouterr().err


def test_rows_within_max_bad_fraction_are_a_note_not_a_problem(write_csv, tmp_path: Path, capsys):
    document = yaml.safe_load(scaffold(str(write_csv(SMALL))))
    document["columns"]["plan"]["allowed"] = ["basic"]
    document["max_bad_fraction"] = 0.6
    target = tmp_path / "tolerant.yaml"
    target.write_text(yaml.safe_dump(document))
    assert main(["validate", str(target)]) == EXIT_ERROR  # two rows left cannot be split: the one problem
    said = capsys.readouterr()
    assert "note: 2 of 4 rows (50.0%) break the contract (max_bad_fraction 60.0%): column plan 2" in said.out
    assert "break the contract" not in said.err and "1 problem(s)" in said.err


def test_validate_splits_the_rows_as_a_run_would_and_notes_a_column_that_gives_the_label_away(
        write_csv, tmp_path: Path, capsys):
    """A label with 4 positives passed validate, and the run died in the tuning step on an infinite score with a
    protobuf traceback; a column set only for the positives passed unnoticed, for a test ROC-AUC of 1.0 (the data
    audit)."""
    rows = ["account_id,spend,flag,outcome"] + [
        f"a{i},{i % 7 + 0.5},{'contacted' if i % 10 == 0 else ''},{'yes' if i % 10 == 0 else 'no'}" for i in range(200)]
    target = tmp_path / "leaky.yaml"
    assert main(["init", str(write_csv("\n".join(rows) + "\n")), "--label", "outcome", "-o", str(target)]) == 0
    capsys.readouterr()
    assert main(["validate", str(target)]) == 0
    out = capsys.readouterr().out
    assert "note: column 'flag' alone separates the label (ROC-AUC 1.000 on its own)" in out and "'spend'" not in out
    assert "note: the test rows will hold 4 'yes' row(s): its precision, recall and gates will rest on so few" in out
    rare = write_csv("\n".join(rows[:1] + [row.replace(",yes", ",no") for row in rows[1:]][:-4]
                               + [f"b{i},1.0,,yes" for i in range(4)]) + "\n", "rare.csv")
    document = yaml.safe_load(target.read_text())
    document["data"]["path"] = str(rare)
    target.write_text(yaml.safe_dump(document))
    assert main(["validate", str(target)]) == EXIT_ERROR
    assert "cross-validation in 5 folds needs at least 5 rows of each class there" in capsys.readouterr().err


def copies(text: str, times: int) -> str:
    """`text`'s rows `times` over, each copy with ids of its own: enough rows of each class to split."""
    header, *rows = text.strip().split("\n")
    return "\n".join([header, *(f"{row.split(',', 1)[0]}-{k},{row.split(',', 1)[1]}"
                                for k in range(times) for row in rows)]) + "\n"


def test_undeclared_columns_are_a_note_under_warn_as_a_run_takes_them(write_csv, tmp_path: Path, capsys):
    document = yaml.safe_load(scaffold(str(write_csv(copies(SMALL, 15)))))
    del document["columns"]["note"]
    target = tmp_path / "fewer.yaml"
    for undeclared, code in [("warn", 0), ("error", EXIT_ERROR), ("ignore", 0)]:
        target.write_text(yaml.safe_dump({**document, "undeclared": undeclared}))
        assert main(["validate", str(target)]) == code, undeclared
        said = capsys.readouterr()
        assert ("note: column(s) ['note'] are in the data but not declared" in said.out) == (undeclared == "warn")
        assert ("column(s) ['note'] are in the data" in said.err) == (undeclared == "error")


def test_validate_names_schema_errors(tmp_path: Path, capsys):
    target = tmp_path / "bad.yaml"
    target.write_text(json.dumps({"name": "x", "task": "binary", "data": {"path": "a.csv"},
                                  "label": {"column": "y"}, "columns": {"a": {"type": "integer"}}}))
    assert main(["validate", str(target)]) == EXIT_ERROR
    assert "a binary task needs label.values and label.positive" in capsys.readouterr().err


def test_init_keeps_an_existing_file_unless_forced_and_never_overwrites_its_data(write_csv, tmp_path: Path, capsys):
    data = write_csv(SMALL)
    target = tmp_path / "mine.yaml"
    target.write_text("# my edits\n")
    assert main(["init", str(data), "-o", str(target)]) == EXIT_ERROR
    assert "mine.yaml exists (your edits?); give --force" in capsys.readouterr().err
    assert target.read_text() == "# my edits\n"
    assert main(["init", str(data), "-o", str(data), "--force"]) == EXIT_ERROR
    assert "is the data file itself" in capsys.readouterr().err and data.read_text() == SMALL
    assert main(["init", str(data), "-o", str(target), "--force"]) == 0
    assert yaml.safe_load(target.read_text())["label"]["column"] == "outcome"


def test_init_names_the_use_case_after_its_file_and_gives_a_data_file_beside_it_relative(write_csv, tmp_path: Path,
                                                                                       monkeypatch, capsys):
    """`init customers.csv -o my-churn.yaml` named the use case `customers`, unmarked, so `flowline serve
    my-churn` found nothing, and wrote the data's absolute path, so moving the folder broke it (the README
    audit)."""
    data = write_csv(SMALL, "customers.csv")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "customers.csv", "-o", "my-churn.yaml"]) == 0
    text = (tmp_path / "my-churn.yaml").read_text()
    assert "name: my-churn  # review: runs, packages and `flowline serve NAME` use it" in text
    assert yaml.safe_load(text)["data"]["path"] == "customers.csv"
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    tmp_path.rename(moved)
    monkeypatch.chdir(moved)
    assert len(read_use_case_table(load_use_case(moved / "my-churn.yaml")).frame) == 4  # found where it moved
    assert yaml.safe_load(scaffold(str(moved / "customers.csv"), output=str(moved / "sub" / "x.yaml")))["data"][
        "path"] == str(moved / "customers.csv")  # not in the YAML's folder: absolute
    assert yaml.safe_load(scaffold(str(moved / "customers.csv")))["name"] == "customers"  # printed: the data's name
    assert data.name == "customers.csv"


def test_unreadable_sources_and_files_are_one_line_errors(write_csv, tmp_path: Path, capsys):
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/customers.csv"
    assert main(["init", url]) == EXIT_ERROR
    error = capsys.readouterr().err
    assert f"flowline: init: data source {url} cannot be read: " in error and "Traceback" not in error
    document = yaml.safe_load(scaffold(str(write_csv(SMALL))))
    unreachable = tmp_path / "Unreachable.YAML"  # the suffix in capitals is still a file, not a use-case name
    unreachable.write_text(yaml.safe_dump({**document, "data": {"path": url}}))
    assert main(["validate", str(unreachable)]) == EXIT_ERROR
    assert f"problem: data source {url} cannot be read: " in capsys.readouterr().err
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(yaml.safe_dump({**document, "description": "Kündigungen"}, allow_unicode=True)
                      .encode("latin-1"))
    assert main(["validate", str(latin)]) == EXIT_ERROR
    assert f"{latin} is not utf-8 text: byte" in capsys.readouterr().err


@pytest.mark.pipeline
def test_a_scaffolded_use_case_runs_end_to_end(data_home: Path, tmp_path: Path):
    target = tmp_path / "german.yaml"
    assert main(["init", str(data_home / "german_credit.csv"), "--label", "class", "-o", str(target)]) == 0
    summary_file = tmp_path / "summary.json"
    code = main(["run", "--use-case", str(target), "--trials", "1", "--runs-dir", str(tmp_path / "runs"),
                 "--summary", str(summary_file)])
    assert code in (0, EXIT_GATE_FAILED)
    summary = json.loads(summary_file.read_text())
    assert verify(summary["package"])["version"] == summary["package_version"]


def test_only_the_first_column_of_dates_is_the_time_column(write_csv):
    rows = [f"2024-01-{day:02d},2024-02-{day:02d},{day},{day % 2}" for day in range(1, 9)]
    text = "\n".join(["opened,closed,amount,label", *rows]) + "\n"
    document = yaml.safe_load(scaffold(str(write_csv(text))))
    assert document["time_column"] == "opened" and document["columns"]["closed"] == {"type": "string"}
    assert parse_use_case(document).time_column == "opened"


@pytest.mark.xdist_group("s3")
def test_an_s3_object_is_drafted_and_validated(s3_bucket: str, write_csv, tmp_path: Path):
    uri = f"s3://{s3_bucket}/data/small.csv"
    storage.upload_file(write_csv(copies(SMALL, 15)), uri)
    target = tmp_path / "s3.yaml"
    assert main(["init", uri, "-o", str(target)]) == 0
    assert load_use_case(target).data.path == uri
    assert main(["validate", str(target)]) == 0


def test_dates_written_otherwise_than_iso_become_the_time_column_with_their_format(write_csv):
    """03/15/2024 or 15.03.2024 were drafted as free text: no time column, and the dates were lost as features."""
    rows = "".join(f"{m:02d}/{d:02d}/2024,15.{m:02d}.2023,{n % 5}.5,{'no' if n % 3 else 'yes'}\n"
                   for n, (m, d) in enumerate((m, d) for m in range(1, 13) for d in (13, 20, 27)))
    document = yaml.safe_load(scaffold(str(write_csv("ordered,signed,x,outcome\n" + rows))))
    assert document["time_column"] == "ordered"
    assert document["columns"]["ordered"] == {"type": "datetime", "format": "%m/%d/%Y"}
    assert document["columns"]["signed"] == {"type": "string"}  # one time column; the second date stays text
    use_case = parse_use_case(document)
    kept = apply_contract(read_use_case_table(use_case).frame, use_case).kept
    assert len(kept) == 36 and kept["ordered"].dt.month.tolist()[:3] == [1, 1, 1]
    drafted = scaffold(str(write_csv("on,x,outcome\n03/04/2024,1,no\n05/06/2024,2,yes\n")))
    assert yaml.safe_load(drafted)["columns"]["on"]["format"] == "%m/%d/%Y"
    assert "day and month could be either way round" in drafted


def test_numbers_written_for_people_are_drafted_as_numbers_with_what_to_strip(write_csv):
    """$1,234.50, 12.5% and 1,234 were drafted as free text, so the model read them as words, not amounts."""
    rows = "".join(f'"${n * 137.25 + 3:,.2f}",{n % 50 + 0.5}%,"{n * 997:,}",{n % 7},{"no" if n % 3 else "yes"}\n'
                   for n in range(60))
    document = yaml.safe_load(scaffold(str(write_csv("spend,rate,visits,x,outcome\n" + rows))))
    assert document["columns"]["spend"] == {"type": "number", "strip": "$,"}
    assert document["columns"]["rate"] == {"type": "number", "strip": "%"}
    assert document["columns"]["visits"] == {"type": "integer", "strip": ","}
    assert document["columns"]["x"] == {"type": "integer"}  # plain numbers: nothing to strip
    use_case = parse_use_case(document)
    result = apply_contract(read_use_case_table(use_case).frame, use_case)
    assert len(result.kept) == 60
    assert result.kept["spend"].iloc[9] == 9 * 137.25 + 3 and result.kept["visits"].iloc[9] == 8973
    assert result.kept["rate"].iloc[9] == 9.5
    drafted = scaffold(str(write_csv("spend,rate,outcome\n" + "".join(
        f'"-${n}","{n / 100}",{"no" if n % 3 else "yes"}\n' if n % 2 else f'"$ {n}","{n}%",{"no" if n % 3 else "yes"}\n'
        for n in range(60)))))
    columns = yaml.safe_load(drafted)["columns"]
    assert columns["spend"] == {"type": "integer", "strip": "$"}  # "-$5" and "$ 6" read -5 and 6
    assert columns["rate"] == {"type": "number", "strip": "%"} and "only 30 of 60 cells carry '%'" in drafted
    # cells that are not all numbers once stripped stay text, without a strip the contract would refuse
    text = yaml.safe_load(scaffold(str(write_csv("spend,outcome\n" + "".join(
        f'"${n}{"k" if n % 2 else ""}",{"no" if n % 3 else "yes"}\n' for n in range(60))))))["columns"]["spend"]
    assert text["type"] in ("category", "string") and "strip" not in text
    with pytest.raises(ValueError, match="strip applies to integer and number columns only"):
        parse_use_case({**document, "columns": {**document["columns"], "x": {"type": "category", "strip": "$"}}})
    with pytest.raises(ValueError, match="'.': digits, signs, '.' and exponents are part of a number"):
        parse_use_case({**document, "columns": {**document["columns"], "x": {"type": "number", "strip": "."}}})


def test_decimal_commas_are_drafted_with_decimal_never_stripped_as_thousands(write_csv, tmp_path: Path, capsys):
    """In a ';'-separated file '2,904' (2.904 kg) beside '3' was drafted `strip: ","`, confidently, and ingest read
    2904: values x1000, silently (audit F2). European money columns ('29,85') were drafted as free text, as the
    contract could not read a decimal comma (audit F7)."""
    rows = "".join(f"{2.904 + n / 1000:.3f};{n % 5};{n * 13.35 + 1000:,.2f};{n * 37}{'.5' if n % 2 else ''};"
                   f"{'yes' if n % 3 else 'no'}\n".replace(".", "#").replace(",", ".").replace("#", ",")
                   if n % 4 else f"{3 + n % 2};{n % 5};{n * 13.35:.2f};{n * 37};no\n".replace(".", ",")
                   for n in range(60))
    path = write_csv("weight_kg;x;charges;total;outcome\n" + rows)
    target = tmp_path / "euro.yaml"
    assert main(["init", str(path), "-o", str(target)]) == 0
    drafted = target.read_text()
    columns = yaml.safe_load(drafted)["columns"]
    assert columns["weight_kg"] == {"type": "number", "decimal": ","}
    assert columns["charges"] == {"type": "number", "decimal": ","}  # '1.013,35': '.' groups thousands
    assert columns["total"] == {"type": "number", "decimal": ","} and columns["x"] == {"type": "integer"}
    weight = next(line for line in drafted.splitlines() if line.strip().startswith("weight_kg:"))
    assert ("# review: ',' read as the decimal mark, as the file is ';'-separated: '2,905' is 2.905; if ',' groups "
            'thousands here, write strip: "," instead of decimal') in weight
    assert "'29,85' is 29.85" not in drafted and "strip" not in str(columns)
    assert main(["validate", str(target)]) == 0, capsys.readouterr().err
    use_case = load_use_case(target)
    kept = apply_contract(read_use_case_table(use_case).frame, use_case).kept
    assert kept["weight_kg"].iloc[0] == 3 and kept["weight_kg"].iloc[1] == 2.905  # not 2905
    assert kept["charges"].iloc[1] == 1013.35 and kept["total"].iloc[1] == 37.5
    # A ','-separated file: '29,85' (quoted) is a decimal comma, '1,234' with no decimals stays thousands, as do
    # commas beside '.' decimals; ';' or not, a ',' stripped from a ';' file is said to maybe be a decimal mark.
    quoted = "".join(f'"{n},{n % 90 + 10}","{n * 997:,}",{n % 2}\n' for n in range(60))
    columns = yaml.safe_load(scaffold(str(write_csv("amount,visits,outcome\n" + quoted, "comma.csv"))))["columns"]
    assert columns["amount"] == {"type": "number", "decimal": ","}
    assert columns["visits"] == {"type": "integer", "strip": ","}
    grouped = scaffold(str(write_csv("spend;outcome\n" + "".join(f"{n * 137.25 + 1000:,.2f};{n % 2}\n"
                                                                   for n in range(60)), "grouped.csv")))
    assert yaml.safe_load(grouped)["columns"]["spend"] == {"type": "number", "strip": ","}
    assert ("in a ';'-separated file ',' could be a decimal mark: if so, write decimal: \",\" and take ',' out of "
            "strip") in grouped


def test_a_label_of_numbers_written_for_people_says_so_and_what_to_do(write_csv, capsys):
    """A regression label written '$1,889.50' got "cannot guess the task ...: flowline predicts ... a number
    (regression)" although its values are numbers (audit F8): a label takes no strip, so the data must change."""
    path = write_csv("x,TotalCharges\n" + "".join(f'{n},"${n * 101.25 + 1000:,.2f}"\n' for n in range(60)))
    assert main(["init", str(path), "--label", "TotalCharges"]) == EXIT_ERROR
    assert ("label column 'TotalCharges' holds numbers written with '$', ',' (such as '$1,000.00', the number 1000): "
            "a label takes no strip or decimal, so write them as plain numbers in the data") in capsys.readouterr().err
    euro = write_csv("x;amount\n" + "".join(f"{n};{n * 7 + 3},{n % 90 + 10}\n" for n in range(60)), "euro.csv")
    with pytest.raises(ScaffoldError, match=r"label column 'amount' holds numbers written with a decimal comma "
                                            r"\(such as '3,10', the number 3.1\)"):
        scaffold(str(euro), "amount")


def test_a_nearly_unique_id_is_drafted_as_an_id_and_free_text_is_marked_for_review(write_csv):
    """An id column with one repeated value was drafted as free text, unmarked, and became a target-encoded
    feature of the model; the repeat is what the id check exists to catch."""
    rows = [f"c{n},note {n} here,{n % 5},{'no' if n % 3 else 'yes'}" for n in range(300)]
    rows[7] = rows[7].replace("c7,", "c8,")  # one id twice
    text = scaffold(str(write_csv("customer_id,comment,x,outcome\n" + "\n".join(rows) + "\n")))
    document = yaml.safe_load(text)
    assert document["id_columns"] == ["customer_id"]
    noted = {line.split(":")[0].strip(): line for line in text.splitlines() if line.strip().startswith(("customer_id:",
                                                                                                       "comment:"))}
    assert "# review: named like an id, 299 distinct values in 300 rows" in noted["customer_id"]
    assert "# review: free text, 300 distinct values: the model reads it" in noted["comment"]
    use_case = parse_use_case(document)
    result = apply_contract(read_use_case_table(use_case).frame, use_case)
    assert len(result.quarantined) == 1 and "customer_id" not in use_case.feature_columns
    # A key that repeats often (a transaction log's customer), or has blanks, is no id: ingest would quarantine
    # every repeat. It stays a column, marked for review.
    logged = [f"c{n % 200},{n % 5},{'no' if n % 3 else 'yes'}" for n in range(300)]
    assert "id_columns" not in yaml.safe_load(scaffold(str(write_csv("customer_id,x,outcome\n" + "\n".join(logged)))))
    blank = [f"{'' if n % 20 == 0 else f'p{n}'},{n % 5},{'no' if n % 3 else 'yes'}" for n in range(300)]
    assert "id_columns" not in yaml.safe_load(scaffold(str(write_csv("policy_number,x,outcome\n" + "\n".join(blank)))))


def test_a_constant_column_and_question_marks_are_marked_for_review(write_csv):
    """IBM HR's EmployeeCount (1 in every row) and Adult's '?' (its missing values) were drafted without a word."""
    rows = [f"1,{'?' if n % 10 == 0 else 'Sales'},{n % 7},{'Y' if n % 2 else ''},{'no' if n % 3 else 'yes'}"
            for n in range(100)]
    text = scaffold(str(write_csv("EmployeeCount,workclass,x,flag,outcome\n" + "\n".join(rows) + "\n")))
    noted = {line.split(":")[0].strip(): line for line in text.splitlines()
             if line.strip().startswith(("EmployeeCount:", "workclass:", "x:", "flag:"))}
    assert "review: one value in every row, which tells the model nothing" in noted["EmployeeCount"]
    assert "one value in every row" not in noted["flag"]  # Y or blank: two values
    assert "review: 10 cell(s) are '?': if '?' marks a missing value, blank those cells in the data" in noted["workclass"]
    assert "review" not in noted["x"]


def test_a_saved_dataframe_index_is_drafted_as_an_id_not_a_feature(write_csv, tmp_path: Path):
    """pandas' to_csv writes the index as a first column with a blank header: 0, 1, 2, ... in file order, which
    a model would learn from if the file is sorted by its label."""
    frame = pd.DataFrame({"x": [n % 7 for n in range(60)], "outcome": ["no"] * 40 + ["yes"] * 20})
    frame.to_csv(tmp_path / "saved.csv")
    frame.to_csv(tmp_path / "numbered.csv", index_label="index")
    for source in ("saved.csv", "numbered.csv"):
        document = yaml.safe_load(scaffold(str(tmp_path / source)))
        index = "" if source == "saved.csv" else "index"
        assert document["id_columns"] == [index] and document["columns"][index] == {"type": "string"}
        assert len(apply_contract(read_use_case_table(parse_use_case(document)).frame, parse_use_case(document)).kept) == 60
    # a column of another name, or not counting rows, is data
    frame.sample(frac=0.5, random_state=1).to_csv(tmp_path / "shuffled.csv")  # filtered and shuffled: still labels
    assert yaml.safe_load(scaffold(str(tmp_path / "shuffled.csv")))["id_columns"] == [""]
    # a column of another name, or repeating values, is data
    frame.assign(n=range(5, 65)).to_csv(tmp_path / "other.csv", index=False)
    assert "id_columns" not in yaml.safe_load(scaffold(str(tmp_path / "other.csv")))
    frame.set_index(frame["x"]).to_csv(tmp_path / "repeating.csv", index_label="index")
    assert "id_columns" not in yaml.safe_load(scaffold(str(tmp_path / "repeating.csv")))


def test_a_column_of_numbers_with_many_na_cells_is_a_category_with_a_review_note(write_csv):
    """One cell in ten 'N/A' made tenure a 74-value category, target-encoded with 'N/A' a level, and said nothing."""
    rows = "".join(f"{'N/A' if n % 10 == 0 else n % 37},{n % 5}.5,{'no' if n % 3 else 'yes'}\n" for n in range(200))
    document = yaml.safe_load(scaffold(str(write_csv("tenure,x,outcome\n" + rows))))
    assert document["columns"]["tenure"]["type"] == "category"
    noted = scaffold(str(write_csv("tenure,x,outcome\n" + rows))).split("\n")
    line = next(line for line in noted if line.strip().startswith("tenure:"))
    assert "review: 90% of its cells are numbers, read as categories because of the others ('N/A')" in line
    assert "review" not in next(line for line in noted if line.strip().startswith("x:"))
    # a fifth of the cells corrupt: still most of them numbers, still a note (it was silent below 90 %)
    rows = "".join(f"{'N/A#err' if n % 5 == 0 else n % 37},{n % 5}.5,{'no' if n % 3 else 'yes'}\n" for n in range(200))
    line = next(line for line in scaffold(str(write_csv("tenure,x,outcome\n" + rows))).split("\n")
                if line.strip().startswith("tenure:"))
    assert "review: 80% of its cells are numbers, read as categories because of the others ('N/A#err')" in line


def test_a_column_mixing_decimal_commas_and_points_is_noted_not_guessed(write_csv):
    """A hand-edited sheet exported to ';' writes '12,30' in some rows and '2.5' in others: no one decimal mark
    reads it, so it was drafted as a category with no word, and the model read a quantity as labels."""
    rows = "".join(
        f"{f'{n % 20 + 10},{n % 90 + 10}' if n % 3 == 0 else f'{n % 7 + 1}.5'};"  # a third with ','
        f"{f'{n},75' if n % 20 == 0 else 'N/A' if n == 59 else f'{n}.25'};"  # one cell in twenty with ','
        f"{n * 3 + 1},{n % 90 + 10};{'basic' if n % 2 else 'pro'};"
        f"{('1.5', '2,5', 'none', 'many')[n % 4]};{'yes' if n % 3 else 'no'}\n" for n in range(60))
    text = scaffold(str(write_csv("weight;mostly;price;plan;words;outcome\n" + rows)))
    columns = yaml.safe_load(text)["columns"]
    noted = {line.split(":")[0].strip(): line for line in text.splitlines() if line.startswith("  ")}
    assert columns["weight"]["type"] in ("category", "string")  # not guessed: ',' may group thousands elsewhere
    assert ("review: numbers written with two decimal marks, ',' in 20 cell(s) ('10,10', '13,13') and '.' in 40 "
            "('2.5', '3.5'), so no one mark reads them and they stay text: fix the export so that every cell "
            'writes one mark, then declare {type: number, decimal: ","} or {type: number}') in noted["weight"]
    # Its ',' cells are no missing values, as the note on a column of mostly numbers would call them; its 'N/A' is.
    assert ("',' in 3 cell(s) ('0,75', '20,75') and '.' in 56 ('1.25', '2.25')" in noted["mostly"]
            and "; 1 other cell(s) are not numbers ('N/A'): blank them if they mark a missing value" in noted["mostly"])
    assert "because of the others" not in noted["mostly"]
    assert columns["price"] == {"type": "number", "decimal": ","} and "two decimal marks" not in noted["price"]
    assert "review" not in noted["plan"] and "two decimal marks" not in noted["words"]


def test_a_column_blank_in_every_row_is_marked_for_review(write_csv):
    """Excel's trailing separator makes an unnamed column of blanks, which was drafted as a feature unremarked."""
    rows = "".join(f"{n % 5}.5,{'no' if n % 3 else 'yes'},\n" for n in range(60))
    text = scaffold(str(write_csv("x,outcome,\n" + rows)))
    line = next(line for line in text.split("\n") if line.strip().startswith('"":'))
    assert "review: every cell is blank, which tells the model nothing; an unnamed column" in line


def test_a_parquet_index_is_drafted_as_a_column_and_a_range_index_is_not(tmp_path: Path):
    """A frame saved after set_index("account_id") holds its ids only in the Parquet index: init drafted no id and
    the run trained without it. An unnamed index, a filtered frame's row labels or a RangeIndex, is no column."""
    frame = pd.DataFrame({"account_id": [f"a{n}" for n in range(60)], "x": [n % 7 for n in range(60)],
                          "outcome": ["no"] * 40 + ["yes"] * 20})
    frame.set_index("account_id").to_parquet(tmp_path / "indexed.parquet")
    document = yaml.safe_load(scaffold(str(tmp_path / "indexed.parquet")))
    assert document["id_columns"] == ["account_id"] and document["columns"]["account_id"] == {"type": "string"}
    use_case = parse_use_case(document)
    assert apply_contract(read_use_case_table(use_case).frame, use_case).kept["account_id"].tolist()[:2] == ["a0", "a1"]
    rows = frame.drop(columns="account_id")
    rows[rows["x"] != 3].to_parquet(tmp_path / "filtered.parquet")
    rows.to_parquet(tmp_path / "plain.parquet")
    for unnamed in ("filtered.parquet", "plain.parquet"):
        document = yaml.safe_load(scaffold(str(tmp_path / unnamed)))
        assert "id_columns" not in document and list(document["columns"]) == ["x"], unnamed
